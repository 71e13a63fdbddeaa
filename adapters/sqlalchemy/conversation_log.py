"""The hot write of a chat as named operations: lock a conversation, append an exchange.

A post to a knowledge bot is, on PostgreSQL: BEGIN; `lock` (SELECT ... FOR UPDATE); the bot
read (queries/reads.py); `append` (one statement: the UPDATE of the conversation, with the
INSERT of every message in its WITH clause); COMMIT. On SQLite: BEGIN IMMEDIATE, the same
SELECTs, an INSERT and an UPDATE, COMMIT. Each statement is compiled once per dialect and runs
on the session's own connection inside the session's transaction (queries/statements.py), so
nothing here needs the ORM: the
conversation `lock` returns is not tracked by the session, and `append` writes its row itself.
Its row is locked from `lock` to the end of the unit of work, so writing every column the domain
may change is exact: nobody else can have changed one meanwhile. A locked conversation no
`append` stored (a rename, a close) is stored by `commit()`, with the same UPDATE: the log keeps
the list of those, and nothing else (no copies, no comparisons).

A conversation the session does track (added in this unit of work, or read through
`conversations`) is the ORM's to write: `append` flushes it first (its row, and any pending
parent, then exist) and inserts only the messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from adapters.sqlalchemy import tables
from adapters.sqlalchemy.errors import translating
from adapters.sqlalchemy.queries.compiled import CompiledSelect, CompiledStatement, parameters
from adapters.sqlalchemy.queries.reads import by_id
from adapters.sqlalchemy.queries.statements import Statements
from adapters.sqlalchemy.store import SessionSource
from domain.conversations import Conversation, Message

# The columns of a conversation the domain changes (appending, renaming, closing); its id,
# parents and creation time never change.
CHANGING = ("external_user_id", "title", "status", "message_count", "last_message_at", "updated_at")
MESSAGE_COLUMNS = tuple(column.key for column in tables.messages.columns)
# Rows per INSERT: one statement for any exchange, a bounded parameter list for bulk appends.
ROWS_PER_INSERT = 32


class LogStatements:
    """The statements of the conversation log, compiled for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        # PostgreSQL runs an INSERT inside the WITH clause of the UPDATE: an exchange is one
        # statement, one round trip. SQLite has no DML in WITH: two statements (two hops to
        # the connection's thread).
        self._merges = dialect.name == "postgresql"
        c = tables.conversations
        self.lock = CompiledSelect(by_id(c).with_for_update(), Conversation, dialect)
        self._update = (
            sa.update(c)
            .where(c.c.id == sa.bindparam("id_", type_=c.c.id.type))
            .values(parameters(c, CHANGING, "_"))
        )
        self.update = CompiledStatement(self._update, dialect)
        self._inserts: dict[int, CompiledStatement] = {}
        self._exchanges: dict[int, tuple[CompiledStatement, ...]] = {}

    def _insert(self, rows: int) -> sa.Insert:
        m = tables.messages
        return sa.insert(m).values([parameters(m, MESSAGE_COLUMNS, f"_{i}") for i in range(rows)])

    def insert(self, rows: int) -> CompiledStatement:
        """INSERT of `rows` messages; the values of row `i` are named `<column>_<i>`."""
        statement = self._inserts.get(rows)
        if statement is None:
            statement = self._inserts[rows] = CompiledStatement(self._insert(rows), self._dialect)
        return statement

    def exchange(self, rows: int) -> tuple[CompiledStatement, ...]:
        """INSERT of `rows` messages and UPDATE of their conversation, as few statements as
        the dialect allows."""
        statements = self._exchanges.get(rows)
        if statements is None:
            if rows == 0:
                statements = (self.update,)
            elif self._merges:
                merged = self._update.add_cte(self._insert(rows).cte("appended"))
                statements = (CompiledStatement(merged, self._dialect),)
            else:
                statements = (self.insert(rows), self.update)
            self._exchanges[rows] = statements
        return statements


def _row_values(messages: Sequence[Message]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for i, message in enumerate(messages):
        fields = vars(message)
        values.update({f"{key}_{i}": fields[key] for key in MESSAGE_COLUMNS})
    return values


def _conversation_values(conversation: Conversation) -> dict[str, Any]:
    fields = vars(conversation)
    values = {f"{key}_": fields[key] for key in CHANGING}
    values["id_"] = conversation.id
    return values


@translating
class SqlAlchemyConversationLog:
    def __init__(
        self,
        compiled: LogStatements,
        statements: Statements,
        session: SessionSource,
    ) -> None:
        self._compiled = compiled
        self._statements = statements
        self._session = session
        self._unstored: list[Conversation] = []  # locked, and not stored by `append` since

    async def lock(self, conversation_id: UUID) -> Conversation | None:
        read = self._compiled.lock
        rows = await self._statements.rows(read.statement, {"id": conversation_id})
        if not rows:
            return None
        conversation = read.rows.build(rows)[0]
        self._unstored.append(conversation)
        return conversation

    async def append(self, conversation: Conversation, messages: Sequence[Message]) -> None:
        if any(message.conversation_id != conversation.id for message in messages):
            raise ValueError("every message appended must belong to the conversation")
        session = await self._session()
        if conversation in session:  # the ORM's to write: flushed first, its row then exists
            await session.flush()
            await self._insert_messages(messages)
            return
        last = max(0, len(messages) - ROWS_PER_INSERT)
        if last:  # a bulk append's leading chunks
            await self._insert_messages(messages[:last])
        values = {**_row_values(messages[last:]), **_conversation_values(conversation)}
        for statement in self._compiled.exchange(len(messages) - last):
            await self._statements.run(statement, values)
        self._unstored = [c for c in self._unstored if c is not conversation]

    async def _insert_messages(self, messages: Sequence[Message]) -> None:
        for start in range(0, len(messages), ROWS_PER_INSERT):
            chunk = messages[start : start + ROWS_PER_INSERT]
            await self._statements.run(self._compiled.insert(len(chunk)), _row_values(chunk))

    async def store_locked(self) -> None:
        """Before commit: stores the locked conversations no `append` stored."""
        unstored, self._unstored = self._unstored, []
        for conversation in unstored:
            await self._statements.run(self._compiled.update, _conversation_values(conversation))


class ReadOnlyConversationLog:
    """A read-only unit of work takes no lock and writes nothing."""

    async def lock(self, conversation_id: UUID) -> Conversation | None:
        raise RuntimeError("a read-only unit of work cannot lock a conversation")

    async def append(self, conversation: Conversation, messages: Sequence[Message]) -> None:
        raise RuntimeError("a read-only unit of work cannot append")

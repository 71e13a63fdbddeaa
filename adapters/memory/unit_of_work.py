"""An in-memory "database" and unit of work that behave like the SQL adapters.

Honest on purpose, so tests on it mean something: each unit of work sees copies (nothing persists
without `commit()`), versioned entities lose races with `ConcurrentUpdate`, unique rules raise
`DuplicateKey(resource=<table>)` and missing parents `IntegrityViolation` at commit, deletes
cascade like ON DELETE CASCADE, and `get_for_update` and the conversation log's `lock` serialise
writers as a row lock does (past `lock_timeout_seconds` of waiting: `StoreBusy`).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from adapters.memory import repositories as repos
from adapters.memory.conversation_log import InMemoryConversationLog, ReadOnlyConversationLog
from application.errors import (
    ConcurrentUpdate,
    DuplicateKey,
    IntegrityViolation,
    StoreBusy,
)
from application.ports import ConversationLog

Row = Any
Key = tuple[str, Any]

# table -> how to get a row's primary key
PRIMARY_KEYS: dict[str, Callable[[Row], Any]] = {
    "users": lambda r: r.id,
    "refresh_tokens": lambda r: r.id,
    "bots": lambda r: r.id,
    "knowledge_entries": lambda r: r.id,
    "bot_api_keys": lambda r: r.id,
    "conversations": lambda r: r.id,
    "messages": lambda r: r.id,
    "feedback": lambda r: r.message_id,
    "idempotency_keys": lambda r: (r.principal, r.key),
}
UNIQUE: dict[str, list[Callable[[Row], Any]]] = {
    "users": [lambda r: r.email],
    "refresh_tokens": [lambda r: r.token_hash],
    "bot_api_keys": [lambda r: r.prefix],
    "messages": [lambda r: (r.conversation_id, r.seq)],
}
VERSIONED = {"bots", "knowledge_entries"}
# child table, its column, the parent table: mirrors the FOREIGN KEY ... ON DELETE CASCADE rules
FOREIGN_KEYS: list[tuple[str, str, str]] = [
    ("refresh_tokens", "user_id", "users"),
    ("bots", "owner_id", "users"),
    ("knowledge_entries", "bot_id", "bots"),
    ("bot_api_keys", "bot_id", "bots"),
    ("conversations", "bot_id", "bots"),
    ("conversations", "user_id", "users"),
    ("messages", "conversation_id", "conversations"),
    ("feedback", "message_id", "messages"),
    ("feedback", "conversation_id", "conversations"),
]


class InMemoryDatabase:
    """The shared state: one instance stands for one database that many units of work use."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[Any, Row]] = {name: {} for name in PRIMARY_KEYS}
        self.write_lock = asyncio.Lock()


def _snapshot(row: Row) -> dict[str, Any]:
    return copy.deepcopy(dataclasses.asdict(row))


class InMemorySession:
    """A unit of work's identity map: copies of the rows it saw, plus pending adds and deletes."""

    def __init__(self, db: InMemoryDatabase) -> None:
        self.db = db
        self.identity: dict[Key, Row] = {}
        self.loaded: dict[Key, dict[str, Any]] = {}
        self.added: set[Key] = set()
        self.deleted: set[Key] = set()
        # Atomic in-place updates (like SQL's `SET n = n + 1`), applied to the stored row at commit.
        self.atomic_updates: list[tuple[Key, Callable[[Row], None]]] = []

    def on_commit(self, table: str, pk: Any, update: Callable[[Row], None]) -> None:
        self.atomic_updates.append(((table, pk), update))

    def _adopt(self, table: str, stored: Row) -> Row:
        key = (table, PRIMARY_KEYS[table](stored))
        if key in self.deleted:
            return None
        if key not in self.identity:
            self.identity[key] = copy.deepcopy(stored)
            self.loaded[key] = _snapshot(stored)
        return self.identity[key]

    def get(self, table: str, pk: Any) -> Row | None:
        key = (table, pk)
        if key in self.deleted:
            return None
        if key in self.identity:
            return self.identity[key]
        stored = self.db.tables[table].get(pk)
        return None if stored is None else self._adopt(table, stored)

    def query(self, table: str, where: Callable[[Row], bool]) -> list[Row]:
        """Committed rows plus this unit of work's own additions, as the SQL session sees them."""
        found: dict[Any, Row] = {}
        for pk, stored in list(self.db.tables[table].items()):
            key = (table, pk)
            if key in self.deleted:
                continue
            own = self.identity.get(key)
            if own is not None:
                if where(own):
                    found[pk] = own
            elif where(stored):  # test the stored row; copy only what matches
                found[pk] = self._adopt(table, stored)
        for key in self.added - self.deleted:
            if key[0] == table and where(self.identity[key]):
                found[key[1]] = self.identity[key]
        return list(found.values())

    def forget(self, table: str, pk: Any) -> None:
        """Drops this unit of work's copy of a row: the next read sees it as last committed."""
        self.identity.pop((table, pk), None)
        self.loaded.pop((table, pk), None)

    def add(self, table: str, row: Row) -> None:
        key = (table, PRIMARY_KEYS[table](row))
        self.identity[key] = row
        self.added.add(key)
        self.deleted.discard(key)

    def delete(self, table: str, row: Row) -> None:
        self.deleted.add((table, PRIMARY_KEYS[table](row)))

    # --- commit -----------------------------------------------------------------------------------

    def _changed(self) -> list[tuple[Key, Row]]:
        changed = []
        for key, row in self.identity.items():
            if key in self.deleted:
                continue
            if key in self.added or _snapshot(row) != self.loaded.get(key):
                changed.append((key, row))
        return changed

    def _check(self, changed: list[tuple[Key, Row]]) -> None:
        tables = self.db.tables
        for (table, pk), row in changed:
            stored = tables[table].get(pk)
            if (table, pk) in self.added and stored is not None:
                raise DuplicateKey(f"{table}: primary key {pk} exists", resource=table)
            if table in VERSIONED and (table, pk) not in self.added:
                loaded_version = self.loaded[(table, pk)]["version"]
                if stored is None or stored.version != loaded_version:
                    raise ConcurrentUpdate(f"{table}: {pk} was changed by another unit of work")
            for unique_of in UNIQUE.get(table, []):
                value = unique_of(row)
                for other in self._final_rows(table, changed):
                    if PRIMARY_KEYS[table](other) != pk and unique_of(other) == value:
                        raise DuplicateKey(f"{table}: duplicate value {value!r}", resource=table)
            for child, column, parent in FOREIGN_KEYS:
                parent_id = getattr(row, column) if child == table else None
                if parent_id is not None:
                    alive = parent_id in tables[parent] or (parent, parent_id) in self.added
                    if not alive or (parent, parent_id) in self.deleted:
                        raise IntegrityViolation(f"{table}.{column}: no {parent} row {parent_id}")

    def _final_rows(self, table: str, changed: list[tuple[Key, Row]]) -> list[Row]:
        rows = dict(self.db.tables[table])
        for (t, pk), row in changed:
            if t == table:
                rows[pk] = row
        for t, pk in self.deleted:
            if t == table:
                rows.pop(pk, None)
        return list(rows.values())

    def _cascade_delete(self, table: str, pk: Any) -> None:
        if self.db.tables[table].pop(pk, None) is None:
            return
        for child, column, parent in FOREIGN_KEYS:
            if parent == table:
                for row in list(self.db.tables[child].values()):
                    if getattr(row, column) == pk:
                        self._cascade_delete(child, PRIMARY_KEYS[child](row))

    def flush_to_database(self) -> None:
        changed = self._changed()
        self._check(changed)
        for table, pk in self.deleted:
            self._cascade_delete(table, pk)
        for (table, pk), row in changed:
            self.db.tables[table][pk] = copy.deepcopy(row)
        for (table, pk), update in self.atomic_updates:
            if pk in self.db.tables[table]:
                update(self.db.tables[table][pk])
                if (table, pk) in self.identity:
                    self.identity[(table, pk)] = copy.deepcopy(self.db.tables[table][pk])
        self.atomic_updates.clear()
        self.loaded = {key: _snapshot(row) for key, row in self.identity.items()}
        self.added.clear()
        self.deleted.clear()


# As long as the SQL adapters wait for a row lock or SQLite's write lock.
LOCK_TIMEOUT_SECONDS = 30.0


class InMemoryUnitOfWork:
    def __init__(
        self,
        db: InMemoryDatabase,
        *,
        read_only: bool = False,
        lock_timeout_seconds: float = LOCK_TIMEOUT_SECONDS,
    ) -> None:
        self._db = db
        self._read_only = read_only
        self._lock_timeout_seconds = lock_timeout_seconds
        self._session: InMemorySession | None = None
        self._holds_lock = False
        self._log: InMemoryConversationLog | None = None

    async def __aenter__(self) -> Self:
        session = InMemorySession(self._db)
        self._session = session
        self.users = repos.InMemoryUserRepository(session)
        self.refresh_tokens = repos.InMemoryRefreshTokenRepository(session, self._lock)
        self.bots = repos.InMemoryBotRepository(session)
        self.knowledge = repos.InMemoryKnowledgeRepository(session)
        self.api_keys = repos.InMemoryApiKeyRepository(session)
        self.conversations = repos.InMemoryConversationRepository(session, self._lock)
        self.messages = repos.InMemoryMessageRepository(session)
        self.conversation_log: ConversationLog
        if self._read_only:
            self._log, self.conversation_log = None, ReadOnlyConversationLog()
        else:
            self._log = InMemoryConversationLog(session, self._lock)
            self.conversation_log = self._log
        self.feedback = repos.InMemoryFeedbackRepository(session)
        self.idempotency = repos.InMemoryIdempotencyRepository(session)
        self.stats = repos.InMemoryStatsReader(session)
        return self

    async def _lock(self) -> None:
        if not self._holds_lock:
            try:
                await asyncio.wait_for(self._db.write_lock.acquire(), self._lock_timeout_seconds)
            except TimeoutError:
                raise StoreBusy("The store is busy; try again shortly.") from None
            self._holds_lock = True

    def _release(self) -> None:
        if self._holds_lock:
            self._holds_lock = False
            self._db.write_lock.release()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._session = None
        self._release()

    async def commit(self) -> None:
        if self._session is None:
            raise RuntimeError("the unit of work is used outside `async with`")
        if self._read_only:
            raise RuntimeError("a read-only unit of work cannot commit")
        if self._log is not None:
            self._log.store_locked()
        try:
            self._session.flush_to_database()
        except (ConcurrentUpdate, DuplicateKey, IntegrityViolation):
            await self.rollback()
            raise
        self._release()  # committing ends the transaction, and with it the row lock

    async def rollback(self) -> None:
        if self._session is not None:
            self._session.identity.clear()
            self._session.loaded.clear()
            self._session.added.clear()
            self._session.deleted.clear()
            self._session.atomic_updates.clear()
        self._release()

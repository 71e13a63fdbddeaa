"""The conversation log in memory, with the SQL adapter's meanings, and stricter where it helps.

`lock` returns a copy the session does not track (as the SQL adapter's is not tracked by its
ORM session): `append` stores the messages and the conversation as it is then, and `commit()`
stores the locked conversations no `append` stored (a rename, a close). A conversation the
session does track (added in this unit of work, or read through `conversations`) keeps being
tracked: `append` only adds its messages.

Stricter than SQL: a locked conversation changed after its `append` would silently keep the
appended state in SQL; here `commit()` refuses with a RuntimeError that says so, so tests on
these adapters catch the mistake.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain.conversations import Conversation, Message

if TYPE_CHECKING:
    from adapters.memory.unit_of_work import InMemorySession

TABLE = "conversations"


def _state(conversation: Conversation) -> dict[str, Any]:
    return dataclasses.asdict(conversation)


class InMemoryConversationLog:
    def __init__(self, session: InMemorySession, lock: Callable[[], Awaitable[None]]) -> None:
        self._session = session
        self._lock = lock
        self._written: set[UUID] = set()
        # Each conversation `lock` returned, with its state when `append` stored it (None: not
        # stored yet, `commit()` will).
        self._locked: list[tuple[Conversation, dict[str, Any] | None]] = []

    async def lock(self, conversation_id: UUID) -> Conversation | None:
        await self._lock()
        own = (TABLE, conversation_id) in self._session.added or conversation_id in self._written
        if not own:
            # The row as last committed, as SELECT ... FOR UPDATE reads it.
            self._session.forget(TABLE, conversation_id)
        row = self._session.get(TABLE, conversation_id)
        if row is None:
            return None
        locked: Conversation = copy.deepcopy(row)
        self._locked.append((locked, None))
        return locked

    async def append(self, conversation: Conversation, messages: Sequence[Message]) -> None:
        if any(message.conversation_id != conversation.id for message in messages):
            raise ValueError("every message appended must belong to the conversation")
        for message in messages:
            self._session.add("messages", message)
        key = (TABLE, conversation.id)
        if self._session.identity.get(key) is conversation:
            return  # tracked: the session stores its changes at commit
        self._store(conversation)
        self._locked = [
            (locked, _state(locked) if locked is conversation else state)
            for locked, state in self._locked
        ]

    def _store(self, conversation: Conversation) -> None:
        self._session.identity[(TABLE, conversation.id)] = copy.deepcopy(conversation)
        self._written.add(conversation.id)

    def store_locked(self) -> None:
        """Before commit: stores the locked conversations no `append` stored."""
        for locked, state in self._locked:
            if state is None:
                self._store(locked)
            elif _state(locked) != state:
                raise RuntimeError(
                    f"conversation {locked.id} was changed after its `append`: the SQL "
                    "adapters store a locked conversation as `append` left it. Append again "
                    "(`append(conversation, [])`) after the change."
                )
        self._locked = []


class ReadOnlyConversationLog:
    """A read-only unit of work takes no lock and writes nothing."""

    async def lock(self, conversation_id: UUID) -> Conversation | None:
        raise RuntimeError("a read-only unit of work cannot lock a conversation")

    async def append(self, conversation: Conversation, messages: Sequence[Message]) -> None:
        raise RuntimeError("a read-only unit of work cannot append")

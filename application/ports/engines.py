"""Reply engines: what a bot answers with, and how its engine settings are checked.

`ReplyEngine` streams `ReplyEvent`s (text chunks, then one `ReplyDone`) or, without any I/O,
gives a whole `Reply` at once; `KnowledgeRetriever` finds the entries relevant to a question;
`EngineConfigRules` validates a bot's `engine_config` wherever bots are saved, without loading
any engine. Adapters live in `adapters/engines`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from domain.bots import Bot, EngineKind
from domain.conversations import Message


@dataclass(frozen=True)
class ReplyRequest:
    bot: Bot
    history: list[Message]
    message: str


@dataclass(frozen=True)
class ReplyChunk:
    """A piece of the reply text as it is produced."""

    text: str


@dataclass(frozen=True)
class ReplyDone:
    """The end of a reply: its metadata (confidence, fallback, sources, usage, ...)."""

    metadata: dict[str, Any]


ReplyEvent = ReplyChunk | ReplyDone


@dataclass(frozen=True)
class RetrievedEntry:
    """A knowledge entry found relevant to a question, with the retrieval's confidence (0-1)."""

    entry_id: UUID
    question: str
    answer: str
    score: float


class KnowledgeRetriever(Protocol):
    async def retrieve(self, bot: Bot, query: str, limit: int) -> list[RetrievedEntry]:
        """The bot's entries most relevant to `query`, best first, from an index cached per
        knowledge revision."""
        ...


@dataclass(frozen=True)
class Reply:
    """A whole reply given at once."""

    text: str
    metadata: dict[str, Any]


class ReplyEngine(Protocol):
    def answer_now(self, bot: Bot, message: str) -> Reply | None:
        """The whole reply to `message`, if the engine can give it now without any I/O (no
        network, no database, nothing to load); else None, and `reply` is called instead,
        with the history, outside any transaction. The service answers inside the
        transaction that stores the message only when this returns a reply."""
        ...

    def reply(self, request: ReplyRequest) -> AsyncIterator[ReplyEvent]:
        """Streams the reply; ends with exactly one `ReplyDone`. Raises `UpstreamFailed`."""
        ...


# --- engine settings ------------------------------------------------------------------------------


class EngineConfigRules(Protocol):
    def validate(self, engine: EngineKind, config: dict[str, Any]) -> dict[str, Any]:
        """The normalised config; raises `domain.errors.InvalidValue` on a bad one."""
        ...

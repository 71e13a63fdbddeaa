"""The store: repositories per aggregate, their filters, the unit of work that is the only way a
change persists, and the store's health.

Adapters implement these (`adapters/sqlalchemy`, `adapters/memory`); the contract suite runs the
same cases against each. Every repository is reached through a unit of work: `commit()` persists,
leaving without it rolls back. `ConversationLog` is the hot write of a chat, as named operations;
`StatsReader` is the one read-only port served here, returning the `BotStats` read model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self
from uuid import UUID

from application.pagination import Keyset
from domain.bots import Bot, BotApiKey, BotStatus, KnowledgeEntry
from domain.conversations import Conversation, ConversationStatus, Feedback, Message
from domain.users import RefreshToken, User

# --- repositories -------------------------------------------------------------------------------


class UserRepository(Protocol):
    async def add(self, user: User) -> None: ...
    async def get(self, user_id: UUID) -> User | None: ...
    async def get_by_email(self, email: str) -> User | None: ...
    async def list_page(self, *, after: Keyset | None, limit: int) -> list[User]:
        """Oldest first, by (created_at, id); `limit` rows at most."""
        ...

    async def count_admins(self) -> int: ...


class RefreshTokenRepository(Protocol):
    async def add(self, token: RefreshToken) -> None: ...
    async def get_by_hash(self, token_hash: str) -> RefreshToken | None: ...
    async def get_by_hash_for_update(self, token_hash: str) -> RefreshToken | None:
        """Reads the token and locks it until the unit of work ends (one refresh wins a race)."""
        ...

    async def revoke_family(self, family_id: UUID, now: datetime) -> None: ...
    async def revoke_all_for_user(self, user_id: UUID, now: datetime) -> None: ...


@dataclass(frozen=True)
class BotFilter:
    owner_id: UUID | None = None
    status: BotStatus | None = None
    name_contains: str | None = None


class BotRepository(Protocol):
    async def add(self, bot: Bot) -> None: ...
    async def get(self, bot_id: UUID) -> Bot | None: ...
    async def delete(self, bot: Bot) -> None:
        """Deletes the bot with its knowledge, keys, conversations and messages."""
        ...

    async def list_page(self, flt: BotFilter, *, after: Keyset | None, limit: int) -> list[Bot]:
        """Newest first, by (created_at, id) descending."""
        ...

    async def bump_knowledge_revision(self, bot_id: UUID, now: datetime) -> None:
        """Atomically move the bot's knowledge revision on, without touching its `version`
        (a knowledge edit must not make a concurrent settings PATCH fail, nor the reverse)."""
        ...

    async def list_chattable(self, user_id: UUID | None, *, limit: int) -> list[Bot]:
        """Published bots plus, when `user_id` is given, that user's own drafts (newest first)."""
        ...


class KnowledgeRepository(Protocol):
    async def add(self, entry: KnowledgeEntry) -> None: ...
    async def add_many(self, entries: Sequence[KnowledgeEntry]) -> None: ...
    async def get(self, bot_id: UUID, entry_id: UUID) -> KnowledgeEntry | None: ...
    async def delete(self, entry: KnowledgeEntry) -> None: ...
    async def list_page(
        self, bot_id: UUID, *, after: Keyset | None, limit: int
    ) -> list[KnowledgeEntry]:
        """Oldest first, by (created_at, id)."""
        ...

    async def all_for_bot(self, bot_id: UUID) -> list[KnowledgeEntry]:
        """Every entry, for building a retrieval index (oldest first)."""
        ...


class ApiKeyRepository(Protocol):
    async def add(self, key: BotApiKey) -> None: ...
    async def get(self, bot_id: UUID, key_id: UUID) -> BotApiKey | None: ...
    async def get_by_prefix(self, prefix: str) -> BotApiKey | None: ...
    async def list_page(self, bot_id: UUID) -> list[BotApiKey]: ...
    async def delete(self, key: BotApiKey) -> None: ...


@dataclass(frozen=True)
class ConversationFilter:
    user_id: UUID | None = None
    bot_id: UUID | None = None
    status: ConversationStatus | None = None
    external_user_id: str | None = None
    only_key_opened: bool = False
    with_down_feedback: bool = False


class ConversationRepository(Protocol):
    async def add(self, conversation: Conversation) -> None: ...
    async def get(self, conversation_id: UUID) -> Conversation | None: ...
    async def get_for_update(self, conversation_id: UUID) -> Conversation | None:
        """Reads the conversation and locks it until the unit of work ends (serialises appends).
        The unit of work tracks it (changes are stored at commit); the hot path is
        `ConversationLog.lock`."""
        ...

    async def delete(self, conversation: Conversation) -> None:
        """Deletes it with its messages and feedback: any conversation, locked through the log
        or read here."""
        ...

    async def list_page(
        self, flt: ConversationFilter, *, after: Keyset | None, limit: int
    ) -> list[Conversation]:
        """Newest activity first, by (last_message_at, id) descending."""
        ...


class MessageRepository(Protocol):
    async def add(self, message: Message) -> None:
        """Stored at commit, with the unit of work; the hot path is `ConversationLog.append`,
        which also stores the conversation's counters."""
        ...

    async def get(self, message_id: UUID) -> Message | None: ...
    async def list_page(
        self, conversation_id: UUID, *, after_seq: int, limit: int
    ) -> list[Message]:
        """Oldest first, by sequence number, strictly after `after_seq`."""
        ...

    async def recent(self, conversation_id: UUID, limit: int) -> list[Message]:
        """The last `limit` messages, oldest first; never the whole history."""
        ...


class ConversationLog(Protocol):
    """The hot write of a chat, as named operations: every message is written through here.

    `lock` then `append`, in one unit of work, is what posting a message or storing a reply is;
    the SQL adapter runs each as a fixed, small set of statements. A read-only unit of work's
    log refuses both (RuntimeError).
    """

    async def lock(self, conversation_id: UUID) -> Conversation | None:
        """The conversation, its row locked until the unit of work ends: appends to one
        conversation are serialised, so sequence numbers have no gaps.

        What the domain changes on it is stored by `append`, or, if nothing was appended since
        the lock (a rename, a close), by `commit()`; a change after its `append` is not stored
        (append again). Raises `StoreBusy` when the lock is not free in time."""
        ...

    async def append(self, conversation: Conversation, messages: Sequence[Message]) -> None:
        """Store `messages`, which the domain has just appended to `conversation`, with the
        conversation as it is now (its counters, and anything else the domain changed on it).

        `conversation` is one this unit of work locked, or added (its greeting, say): an
        added one, or one read through `conversations`, is tracked by the unit of work, which
        stores its changes at commit; only its messages are written here. The SQL adapters
        write at once (a duplicate sequence number may raise `DuplicateKey` here rather than
        at commit); nothing persists without `commit()`."""
        ...


class FeedbackRepository(Protocol):
    async def add(self, feedback: Feedback) -> None: ...
    async def get(self, message_id: UUID) -> Feedback | None: ...


@dataclass
class IdempotencyRecord:
    """The first answer to a request carrying an `Idempotency-Key`, replayed to retries.

    `response` is None while the first request is still being answered.
    """

    principal: str
    key: str
    fingerprint: str
    response: dict[str, Any] | None
    created_at: datetime
    # While `response` is None: the user message the attempt stored, and until when that attempt
    # holds the key. A retry after the lease (the attempt died) answers that message itself.
    user_message_id: UUID | None = None
    lease_expires_at: datetime | None = None


class IdempotencyRepository(Protocol):
    async def get(self, principal: str, key: str) -> IdempotencyRecord | None: ...
    async def add(self, record: IdempotencyRecord) -> None: ...
    async def purge_older_than(self, cutoff: datetime) -> int: ...


@dataclass(frozen=True)
class BotStats:
    conversations: int
    messages: int
    replies: int
    fallbacks: int
    feedback_up: int
    feedback_down: int
    reply_latencies_ms: list[int] = field(default_factory=list)


class StatsReader(Protocol):
    async def bot_stats(self, bot_id: UUID) -> BotStats: ...


# --- unit of work ---------------------------------------------------------------------------------


class UnitOfWork(Protocol):
    """One transaction. Leaving the `async with` block without `commit()` rolls back."""

    users: UserRepository
    refresh_tokens: RefreshTokenRepository
    bots: BotRepository
    knowledge: KnowledgeRepository
    api_keys: ApiKeyRepository
    conversations: ConversationRepository
    conversation_log: ConversationLog
    messages: MessageRepository
    feedback: FeedbackRepository
    idempotency: IdempotencyRepository
    stats: StatsReader

    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    async def commit(self) -> None:
        """Persist; the transaction has then ended.

        Database refusals, here and from any repository call, mean the same on every adapter:
        `DuplicateKey(resource=<table>)` (a unique rule), `IntegrityViolation` (a missing
        parent, NOT NULL, CHECK), `ConcurrentUpdate` (an optimistic version lost a race),
        `StoreBusy` (locked, serialisation failure, deadlock, lock or pool timeout: retry)."""
        ...

    async def rollback(self) -> None: ...


class UnitOfWorkFactory(Protocol):
    def __call__(self, *, read_only: bool = False) -> UnitOfWork:
        """A new unit of work. `read_only=True` promises no `commit()`: adapters may then
        skip the transaction (one round trip per query) and take no write lock."""
        ...


# --- the store's health ---------------------------------------------------------------------------


class SchemaInspector(Protocol):
    """Tells whether the store answers and its schema is the one this code expects."""

    async def check(self) -> Readiness: ...


@dataclass(frozen=True)
class Readiness:
    ready: bool
    detail: str

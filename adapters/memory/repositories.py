"""In-memory repositories over an `InMemorySession`; orderings match the SQL repositories."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from application.pagination import Keyset
from application.ports import BotFilter, BotStats, ConversationFilter, IdempotencyRecord
from domain.bots import Bot, BotApiKey, BotStatus, KnowledgeEntry
from domain.conversations import Conversation, Feedback, Message, MessageRole, Rating
from domain.users import RefreshToken, Role, User

if TYPE_CHECKING:
    from adapters.memory.unit_of_work import InMemorySession

LATENCY_SAMPLE = 10_000


def _after_asc(after: Keyset | None, value: Any, id_: UUID) -> bool:
    return after is None or (value, id_) > (after.value, after.id)


def _before_desc(after: Keyset | None, value: Any, id_: UUID) -> bool:
    return after is None or (value, id_) < (after.value, after.id)


class _Repository:
    table: str

    def __init__(self, session: InMemorySession) -> None:
        self._session = session

    async def add(self, row: Any) -> None:
        self._session.add(self.table, row)

    async def delete(self, row: Any) -> None:
        self._session.delete(self.table, row)


class InMemoryUserRepository(_Repository):
    table = "users"

    async def get(self, user_id: UUID) -> User | None:
        return self._session.get(self.table, user_id)

    async def get_by_email(self, email: str) -> User | None:
        found = self._session.query(self.table, lambda u: u.email == email)
        return found[0] if found else None

    async def list_page(self, *, after: Keyset | None, limit: int) -> list[User]:
        rows = self._session.query(self.table, lambda u: _after_asc(after, u.created_at, u.id))
        return sorted(rows, key=lambda u: (u.created_at, u.id))[:limit]

    async def count_admins(self) -> int:
        return len(self._session.query(self.table, lambda u: u.role is Role.ADMIN and u.is_active))


class InMemoryRefreshTokenRepository(_Repository):
    table = "refresh_tokens"

    def __init__(self, session: InMemorySession, lock: Callable[[], Awaitable[None]]) -> None:
        super().__init__(session)
        self._lock = lock

    async def get_by_hash_for_update(self, token_hash: str) -> RefreshToken | None:
        await self._lock()
        for table, pk in [k for k in self._session.identity if k[0] == self.table]:
            self._session.forget(table, pk)
        return await self.get_by_hash(token_hash)

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        found = self._session.query(self.table, lambda t: t.token_hash == token_hash)
        return found[0] if found else None

    async def revoke_family(self, family_id: UUID, now: datetime) -> None:
        for token in self._session.query(self.table, lambda t: t.family_id == family_id):
            token.revoke(now)

    async def revoke_all_for_user(self, user_id: UUID, now: datetime) -> None:
        for token in self._session.query(self.table, lambda t: t.user_id == user_id):
            token.revoke(now)


class InMemoryBotRepository(_Repository):
    table = "bots"

    async def get(self, bot_id: UUID) -> Bot | None:
        return self._session.get(self.table, bot_id)

    async def list_page(self, flt: BotFilter, *, after: Keyset | None, limit: int) -> list[Bot]:
        needle = flt.name_contains.lower() if flt.name_contains else None

        def matches(bot: Bot) -> bool:
            return (
                (flt.owner_id is None or bot.owner_id == flt.owner_id)
                and (flt.status is None or bot.status is flt.status)
                and (needle is None or needle in bot.name.lower())
                and _before_desc(after, bot.created_at, bot.id)
            )

        rows = self._session.query(self.table, matches)
        return sorted(rows, key=lambda b: (b.created_at, b.id), reverse=True)[:limit]

    async def bump_knowledge_revision(self, bot_id: UUID, now: datetime) -> None:
        def bump(stored: Bot) -> None:
            stored.knowledge_revision += 1
            stored.updated_at = now

        self._session.on_commit("bots", bot_id, bump)

    async def list_chattable(self, user_id: UUID | None, *, limit: int) -> list[Bot]:
        def visible(bot: Bot) -> bool:
            own_draft = bot.owner_id == user_id and bot.status is BotStatus.DRAFT
            return bot.status is BotStatus.PUBLISHED or (user_id is not None and own_draft)

        rows = self._session.query(self.table, visible)
        return sorted(rows, key=lambda b: (b.created_at, b.id), reverse=True)[:limit]


class InMemoryKnowledgeRepository(_Repository):
    table = "knowledge_entries"

    async def add_many(self, entries: Sequence[KnowledgeEntry]) -> None:
        for entry in entries:
            self._session.add(self.table, entry)

    async def get(self, bot_id: UUID, entry_id: UUID) -> KnowledgeEntry | None:
        entry: KnowledgeEntry | None = self._session.get(self.table, entry_id)
        return entry if entry is not None and entry.bot_id == bot_id else None

    async def list_page(
        self, bot_id: UUID, *, after: Keyset | None, limit: int
    ) -> list[KnowledgeEntry]:
        rows = self._session.query(
            self.table, lambda e: e.bot_id == bot_id and _after_asc(after, e.created_at, e.id)
        )
        return sorted(rows, key=lambda e: (e.created_at, e.id))[:limit]

    async def all_for_bot(self, bot_id: UUID) -> list[KnowledgeEntry]:
        rows = self._session.query(self.table, lambda e: e.bot_id == bot_id)
        return sorted(rows, key=lambda e: (e.created_at, e.id))


class InMemoryApiKeyRepository(_Repository):
    table = "bot_api_keys"

    async def get(self, bot_id: UUID, key_id: UUID) -> BotApiKey | None:
        key: BotApiKey | None = self._session.get(self.table, key_id)
        return key if key is not None and key.bot_id == bot_id else None

    async def get_by_prefix(self, prefix: str) -> BotApiKey | None:
        found = self._session.query(self.table, lambda k: k.prefix == prefix)
        return found[0] if found else None

    async def list_page(self, bot_id: UUID) -> list[BotApiKey]:
        rows = self._session.query(self.table, lambda k: k.bot_id == bot_id)
        return sorted(rows, key=lambda k: (k.created_at, k.id))


class InMemoryConversationRepository(_Repository):
    table = "conversations"

    def __init__(self, session: InMemorySession, lock: Callable[[], Awaitable[None]]) -> None:
        super().__init__(session)
        self._lock = lock

    async def get(self, conversation_id: UUID) -> Conversation | None:
        return self._session.get(self.table, conversation_id)

    async def get_for_update(self, conversation_id: UUID) -> Conversation | None:
        await self._lock()
        # Re-read after the lock, as SELECT ... FOR UPDATE returns the row as last committed.
        self._session.forget(self.table, conversation_id)
        return self._session.get(self.table, conversation_id)

    async def list_page(
        self, flt: ConversationFilter, *, after: Keyset | None, limit: int
    ) -> list[Conversation]:
        down: set[UUID] = set()
        if flt.with_down_feedback:
            down = {
                f.conversation_id
                for f in self._session.query("feedback", lambda f: f.rating is Rating.DOWN)
            }

        def matches(c: Conversation) -> bool:
            return (
                (flt.user_id is None or c.user_id == flt.user_id)
                and (flt.bot_id is None or c.bot_id == flt.bot_id)
                and (flt.status is None or c.status is flt.status)
                and (flt.external_user_id is None or c.external_user_id == flt.external_user_id)
                and (not flt.only_key_opened or c.user_id is None)
                and (not flt.with_down_feedback or c.id in down)
                and _before_desc(after, c.last_message_at, c.id)
            )

        rows = self._session.query(self.table, matches)
        return sorted(rows, key=lambda c: (c.last_message_at, c.id), reverse=True)[:limit]


class InMemoryMessageRepository(_Repository):
    table = "messages"

    async def get(self, message_id: UUID) -> Message | None:
        return self._session.get(self.table, message_id)

    async def list_page(
        self, conversation_id: UUID, *, after_seq: int, limit: int
    ) -> list[Message]:
        rows = self._session.query(
            self.table, lambda m: m.conversation_id == conversation_id and m.seq > after_seq
        )
        return sorted(rows, key=lambda m: m.seq)[:limit]

    async def recent(self, conversation_id: UUID, limit: int) -> list[Message]:
        rows = self._session.query(self.table, lambda m: m.conversation_id == conversation_id)
        return sorted(rows, key=lambda m: m.seq)[-limit:] if limit > 0 else []


class InMemoryFeedbackRepository(_Repository):
    table = "feedback"

    async def get(self, message_id: UUID) -> Feedback | None:
        return self._session.get(self.table, message_id)


class InMemoryIdempotencyRepository(_Repository):
    table = "idempotency_keys"

    async def get(self, principal: str, key: str) -> IdempotencyRecord | None:
        return self._session.get(self.table, (principal, key))

    async def purge_older_than(self, cutoff: datetime) -> int:
        old = self._session.query(self.table, lambda r: r.created_at < cutoff)
        for record in old:
            self._session.delete(self.table, record)
        return len(old)


class InMemoryStatsReader:
    def __init__(self, session: InMemorySession) -> None:
        self._session = session

    async def bot_stats(self, bot_id: UUID) -> BotStats:
        conversation_ids = {
            c.id for c in self._session.query("conversations", lambda c: c.bot_id == bot_id)
        }
        messages = self._session.query("messages", lambda m: m.conversation_id in conversation_ids)
        replies = [
            m
            for m in messages
            if m.role is MessageRole.ASSISTANT and m.metadata.get("latency_ms") is not None
        ]
        feedback = self._session.query("feedback", lambda f: f.conversation_id in conversation_ids)
        newest_first = sorted(replies, key=lambda m: m.created_at, reverse=True)
        return BotStats(
            conversations=len(conversation_ids),
            messages=len(messages),
            replies=len(replies),
            fallbacks=sum(1 for m in replies if m.metadata.get("fallback") is True),
            feedback_up=sum(1 for f in feedback if f.rating is Rating.UP),
            feedback_down=sum(1 for f in feedback if f.rating is Rating.DOWN),
            reply_latencies_ms=[int(m.metadata["latency_ms"]) for m in newest_first][
                :LATENCY_SAMPLE
            ],
        )

"""Bot use cases: lifecycle, settings with optimistic concurrency, knowledge, API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from application.access import manageable_bot, require_user
from application.actors import Actor, BotKeyActor
from application.errors import (
    AuthenticationFailed,
    ConcurrentUpdate,
    Conflict,
    NotFound,
    PreconditionFailed,
)
from application.pagination import Keyset, Page, clamp_limit, decode_cursor, paginate
from application.ports import (
    BotFilter,
    Clock,
    EngineConfigRules,
    IdGenerator,
    UnitOfWork,
    UnitOfWorkFactory,
)
from domain.bots import (
    DEFAULT_FALLBACK_MESSAGE,
    Bot,
    BotApiKey,
    BotStatus,
    EngineKind,
    KnowledgeDraft,
    KnowledgeEntry,
)
from domain.errors import InvalidValue

MAX_BULK_ENTRIES = 5_000
API_KEY_PREFIX = "cbk_"
# Writing `last_used_at` on every request would turn each chat read into a write; once a
# minute is precise enough for "when was this key last used".
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class BotSettings:
    name: str
    description: str = ""
    system_prompt: str = ""
    greeting: str = ""
    fallback_message: str = DEFAULT_FALLBACK_MESSAGE
    engine: EngineKind = EngineKind.KNOWLEDGE
    engine_config: dict[str, Any] | None = None


@dataclass(frozen=True)
class BotView:
    """A bot as one reader may see it: `managed` readers (its owner, admins) see every field;
    other signed-in users see only the public fields of a published bot."""

    bot: Bot
    managed: bool


@dataclass(frozen=True)
class IssuedApiKey:
    key: BotApiKey
    secret: str  # shown once, never stored


def hash_api_key(raw_key: str) -> str:
    # 256-bit random secrets: a fast hash is enough (nothing to brute-force).
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_prefix(raw_key: str) -> str | None:
    """`cbk_<12 hex>_<secret>` -> `cbk_<12 hex>`, the public, unique, listed part."""
    if not raw_key.startswith(API_KEY_PREFIX):
        return None
    public, sep, secret = raw_key[len(API_KEY_PREFIX) :].partition("_")
    if not sep or len(public) != 12 or not secret:
        return None
    return API_KEY_PREFIX + public


def is_api_key(raw_token: str) -> bool:
    return raw_token.startswith(API_KEY_PREFIX)


def _check_version(current: int, expected: int | None) -> None:
    if expected is not None and expected != current:
        raise PreconditionFailed(
            f"The resource is at version {current}, not {expected}; read it again."
        )


class BotService:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        engine_rules: EngineConfigRules,
        clock: Clock,
        ids: IdGenerator,
    ) -> None:
        self._uow_factory = uow_factory
        self._engine_rules = engine_rules
        self._clock = clock
        self._ids = ids

    # --- bots ---------------------------------------------------------------------------------

    async def create_bot(self, actor: Actor, settings: BotSettings) -> Bot:
        """Create a draft bot owned by the caller. `engine_config` is checked per engine."""
        user = require_user(actor)
        config = self._engine_rules.validate(settings.engine, settings.engine_config or {})
        bot = Bot.create(
            id=self._ids.new_id(),
            owner_id=user.user_id,
            name=settings.name,
            now=self._clock.now(),
            description=settings.description,
            system_prompt=settings.system_prompt,
            greeting=settings.greeting,
            fallback_message=settings.fallback_message,
            engine=settings.engine,
            engine_config=config,
        )
        async with self._uow_factory() as uow:
            await uow.bots.add(bot)
            await uow.commit()
        return bot

    async def list_bots(
        self,
        actor: Actor,
        *,
        status: BotStatus | None = None,
        name_contains: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Bot]:
        """The caller's bots, newest first (admins: every bot)."""
        user = require_user(actor)
        size = clamp_limit(limit)
        flt = BotFilter(
            owner_id=None if user.is_admin else user.user_id,
            status=status,
            name_contains=name_contains or None,
        )
        async with self._uow_factory(read_only=True) as uow:
            rows = await uow.bots.list_page(flt, after=decode_cursor(cursor), limit=size + 1)
        return paginate(rows, size, lambda b: Keyset(b.created_at, b.id))

    async def get_bot(self, actor: Actor, bot_id: UUID) -> Bot:
        """One bot, for its owner and admins."""
        async with self._uow_factory(read_only=True) as uow:
            return await manageable_bot(uow, actor, bot_id)

    async def view_bot(self, actor: Actor, bot_id: UUID) -> BotView:
        """One bot: every field for its owner and admins; the public fields of a published bot
        for any other signed-in user (who may chat with it); NotFound for everyone else."""
        user = require_user(actor)
        async with self._uow_factory(read_only=True) as uow:
            bot = await uow.bots.get(bot_id)
        if bot is None:
            raise NotFound("No such bot.")
        if user.is_admin or bot.owner_id == user.user_id:
            return BotView(bot, managed=True)
        if bot.status is BotStatus.PUBLISHED:
            return BotView(bot, managed=False)
        raise NotFound("No such bot.")

    async def update_bot(
        self,
        actor: Actor,
        bot_id: UUID,
        changes: dict[str, Any],
        *,
        expected_version: int | None = None,
    ) -> Bot:
        """Change settings. With `expected_version` (If-Match) a stale version is refused, and
        of concurrent writers of one version exactly one wins."""
        async with self._uow_factory() as uow:
            bot = await manageable_bot(uow, actor, bot_id)
            _check_version(bot.version, expected_version)
            if "engine" in changes or "engine_config" in changes:
                engine = EngineKind(changes.get("engine", bot.engine))
                config = changes.get("engine_config", bot.engine_config)
                changes = {
                    **changes,
                    "engine": engine,
                    "engine_config": self._engine_rules.validate(engine, config),
                }
            bot.configure(changes, self._clock.now())
            await self._commit_versioned(uow, expected_version)
        return bot

    async def delete_bot(
        self, actor: Actor, bot_id: UUID, *, expected_version: int | None = None
    ) -> None:
        """Delete the bot with its knowledge, keys, conversations and messages, at once."""
        async with self._uow_factory() as uow:
            bot = await manageable_bot(uow, actor, bot_id)
            _check_version(bot.version, expected_version)
            await uow.bots.delete(bot)
            await uow.commit()

    async def publish_bot(self, actor: Actor, bot_id: UUID) -> Bot:
        """draft -> published: any signed-in user may now chat with it."""
        async with self._uow_factory() as uow:
            bot = await manageable_bot(uow, actor, bot_id)
            bot.publish(self._clock.now())
            await self._commit_versioned(uow)
        return bot

    async def archive_bot(self, actor: Actor, bot_id: UUID) -> Bot:
        """-> archived: the bot answers no new messages (409); history stays readable."""
        async with self._uow_factory() as uow:
            bot = await manageable_bot(uow, actor, bot_id)
            bot.archive(self._clock.now())
            await self._commit_versioned(uow)
        return bot

    @staticmethod
    async def _commit_versioned(uow: UnitOfWork, expected_version: int | None = None) -> None:
        """A lost race is the caller's stale `If-Match` when they sent one (412), else a
        conflict with a concurrent change (409)."""
        try:
            await uow.commit()
        except ConcurrentUpdate as error:
            detail = "The resource was changed concurrently; read it again."
            if expected_version is not None:
                raise PreconditionFailed(detail) from error
            raise Conflict(detail) from error

    # --- knowledge ----------------------------------------------------------------------------

    async def add_entry(self, actor: Actor, bot_id: UUID, draft: KnowledgeDraft) -> KnowledgeEntry:
        """Add one knowledge entry; the bot's knowledge revision moves on."""
        async with self._uow_factory() as uow:
            bot = await manageable_bot(uow, actor, bot_id)
            entry = self._new_entry(bot.id, draft)
            await uow.knowledge.add(entry)
            await uow.bots.bump_knowledge_revision(bot.id, self._clock.now())
            await uow.commit()
        return entry

    async def import_entries(
        self, actor: Actor, bot_id: UUID, drafts: list[KnowledgeDraft]
    ) -> list[UUID]:
        """All or nothing: every entry is validated before one transaction inserts them in
        batches; one bad entry (its index is in the error) leaves the knowledge unchanged.
        Returns the new entries' ids, in the order of `drafts`."""
        if len(drafts) > MAX_BULK_ENTRIES:
            raise InvalidValue("entries", f"at most {MAX_BULK_ENTRIES} entries per request")
        async with self._uow_factory() as uow:
            bot = await manageable_bot(uow, actor, bot_id)
            entries = []
            for index, draft in enumerate(drafts):
                try:
                    entries.append(self._new_entry(bot.id, draft))
                except InvalidValue as error:
                    raise InvalidValue(f"entries.{index}.{error.field}", error.message) from error
            await uow.knowledge.add_many(entries)
            await uow.bots.bump_knowledge_revision(bot.id, self._clock.now())
            await uow.commit()
        return [entry.id for entry in entries]

    def _new_entry(self, bot_id: UUID, draft: KnowledgeDraft) -> KnowledgeEntry:
        return KnowledgeEntry.create(
            id=self._ids.new_id(),
            bot_id=bot_id,
            question=draft.question,
            answer=draft.answer,
            examples=list(draft.examples),
            tags=list(draft.tags),
            now=self._clock.now(),
        )

    async def list_entries(
        self, actor: Actor, bot_id: UUID, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[KnowledgeEntry]:
        """The bot's knowledge, oldest first."""
        size = clamp_limit(limit)
        async with self._uow_factory(read_only=True) as uow:
            await manageable_bot(uow, actor, bot_id)
            rows = await uow.knowledge.list_page(
                bot_id, after=decode_cursor(cursor), limit=size + 1
            )
        return paginate(rows, size, lambda e: Keyset(e.created_at, e.id))

    async def get_entry(self, actor: Actor, bot_id: UUID, entry_id: UUID) -> KnowledgeEntry:
        async with self._uow_factory(read_only=True) as uow:
            await manageable_bot(uow, actor, bot_id)
            return await self._entry(uow, bot_id, entry_id)

    async def update_entry(
        self,
        actor: Actor,
        bot_id: UUID,
        entry_id: UUID,
        changes: dict[str, Any],
        *,
        expected_version: int | None = None,
    ) -> KnowledgeEntry:
        """Revise an entry (If-Match honoured); the bot's knowledge revision moves on."""
        async with self._uow_factory() as uow:
            await manageable_bot(uow, actor, bot_id)
            entry = await self._entry(uow, bot_id, entry_id)
            _check_version(entry.version, expected_version)
            entry.revise(self._clock.now(), **changes)
            await uow.bots.bump_knowledge_revision(bot_id, self._clock.now())
            await self._commit_versioned(uow, expected_version)
        return entry

    async def delete_entry(
        self,
        actor: Actor,
        bot_id: UUID,
        entry_id: UUID,
        *,
        expected_version: int | None = None,
    ) -> None:
        async with self._uow_factory() as uow:
            await manageable_bot(uow, actor, bot_id)
            entry = await self._entry(uow, bot_id, entry_id)
            _check_version(entry.version, expected_version)
            await uow.knowledge.delete(entry)
            await uow.bots.bump_knowledge_revision(bot_id, self._clock.now())
            await uow.commit()

    @staticmethod
    async def _entry(uow: UnitOfWork, bot_id: UUID, entry_id: UUID) -> KnowledgeEntry:
        entry = await uow.knowledge.get(bot_id, entry_id)
        if entry is None:
            raise NotFound("No such knowledge entry.")
        return entry

    # --- API keys -----------------------------------------------------------------------------

    async def create_api_key(self, actor: Actor, bot_id: UUID, name: str) -> IssuedApiKey:
        """A key that acts for this bot only. The secret is returned once and stored hashed."""
        public = secrets.token_hex(6)
        raw_key = f"{API_KEY_PREFIX}{public}_{secrets.token_urlsafe(32)}"
        async with self._uow_factory() as uow:
            bot = await manageable_bot(uow, actor, bot_id)
            key = BotApiKey(
                id=self._ids.new_id(),
                bot_id=bot.id,
                name=name.strip() or "API key",
                prefix=API_KEY_PREFIX + public,
                secret_hash=hash_api_key(raw_key),
                created_at=self._clock.now(),
            )
            await uow.api_keys.add(key)
            await uow.commit()
        return IssuedApiKey(key=key, secret=raw_key)

    async def list_api_keys(self, actor: Actor, bot_id: UUID) -> list[BotApiKey]:
        async with self._uow_factory(read_only=True) as uow:
            await manageable_bot(uow, actor, bot_id)
            return await uow.api_keys.list_page(bot_id)

    async def revoke_api_key(self, actor: Actor, bot_id: UUID, key_id: UUID) -> None:
        """Revoked keys stop working at once; they stay listed (with `revoked_at`) for audit."""
        async with self._uow_factory() as uow:
            await manageable_bot(uow, actor, bot_id)
            key = await uow.api_keys.get(bot_id, key_id)
            if key is None:
                raise NotFound("No such API key.")
            key.revoke(self._clock.now())
            await uow.commit()

    async def authenticate_api_key(self, raw_key: str) -> BotKeyActor:
        """Turn a bot API key into its principal; unknown and revoked keys, and keys of a
        deactivated owner's bots, are refused alike."""
        prefix = api_key_prefix(raw_key)
        if prefix is None:
            raise AuthenticationFailed("The API key is invalid or revoked.")
        async with self._uow_factory(read_only=True) as uow:
            key = await uow.api_keys.get_by_prefix(prefix)
            if (
                key is None
                or not key.is_active
                or not hmac.compare_digest(key.secret_hash, hash_api_key(raw_key))
            ):
                raise AuthenticationFailed("The API key is invalid or revoked.")
            # A key acts for its bot's owner: a deactivated owner's keys stop with the owner.
            bot = await uow.bots.get(key.bot_id)
            owner = await uow.users.get(bot.owner_id) if bot is not None else None
        if owner is None or not owner.is_active:
            raise AuthenticationFailed("The API key is invalid or revoked.")
        now = self._clock.now()
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
            async with self._uow_factory() as uow:
                stored = await uow.api_keys.get(key.bot_id, key.id)
                if stored is not None:
                    stored.record_use(now)
                    await uow.commit()
        return BotKeyActor(bot_id=key.bot_id, key_id=key.id)


async def load_knowledge(uow_factory: UnitOfWorkFactory, bot_id: UUID) -> list[KnowledgeEntry]:
    """Every entry of a bot: what a reply engine indexes (once per knowledge revision)."""
    async with uow_factory(read_only=True) as uow:
        return await uow.knowledge.all_for_bot(bot_id)

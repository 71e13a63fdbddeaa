"""A bot's life: create it as a draft, read and list it, change its settings, publish, archive,
delete. `BotSettings` is what a member chooses; `BotView` is a bot as one reader may see it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from application.access import manageable_bot, may_manage, require_user
from application.actors import Actor
from application.bots.versions import check_version, commit_versioned
from application.errors import NotFound
from application.pagination import Keyset, Page, clamp_limit, decode_cursor, paginate
from application.ports import BotFilter, Clock, EngineConfigRules, IdGenerator, UnitOfWorkFactory
from domain.bots import DEFAULT_FALLBACK_MESSAGE, Bot, BotStatus, EngineKind


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


class BotLifecycle:
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
        if may_manage(user, bot):
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
            check_version(bot.version, expected_version)
            if "engine" in changes or "engine_config" in changes:
                engine = EngineKind(changes.get("engine", bot.engine))
                config = changes.get("engine_config", bot.engine_config)
                changes = {
                    **changes,
                    "engine": engine,
                    "engine_config": self._engine_rules.validate(engine, config),
                }
            bot.configure(changes, self._clock.now())
            await commit_versioned(uow, expected_version)
        return bot

    async def delete_bot(
        self, actor: Actor, bot_id: UUID, *, expected_version: int | None = None
    ) -> None:
        """Delete the bot with its knowledge, keys, conversations and messages, at once."""
        async with self._uow_factory() as uow:
            bot = await manageable_bot(uow, actor, bot_id)
            check_version(bot.version, expected_version)
            await uow.bots.delete(bot)
            await uow.commit()

    async def publish_bot(self, actor: Actor, bot_id: UUID) -> Bot:
        """draft -> published: any signed-in user may now chat with it."""
        async with self._uow_factory() as uow:
            bot = await manageable_bot(uow, actor, bot_id)
            bot.publish(self._clock.now())
            await commit_versioned(uow)
        return bot

    async def archive_bot(self, actor: Actor, bot_id: UUID) -> Bot:
        """-> archived: the bot answers no new messages (409); history stays readable."""
        async with self._uow_factory() as uow:
            bot = await manageable_bot(uow, actor, bot_id)
            bot.archive(self._clock.now())
            await commit_versioned(uow)
        return bot

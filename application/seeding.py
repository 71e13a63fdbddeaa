"""The example bot a newcomer finds after `make run`: published, with knowledge about this
service, owned by a system account that cannot sign in."""

from __future__ import annotations

from uuid import UUID

from application.bots import BotSettings
from application.ports import Clock, UnitOfWorkFactory
from domain.bots import Bot, KnowledgeDraft, KnowledgeEntry
from domain.users import Role, User

# Fixed, so the README can name it.
EXAMPLE_BOT_ID = UUID("c0ffee00-0000-4000-8000-000000000001")
EXAMPLE_OWNER_ID = UUID("c0ffee00-0000-4000-8000-000000000000")
EXAMPLE_OWNER_EMAIL = "example-bot-owner@chatbots.invalid"
# Not an Argon2 hash: no password ever verifies against it.
UNUSABLE_PASSWORD_HASH = "!unusable"


async def ensure_example_bot(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    *,
    settings: BotSettings,
    knowledge: list[KnowledgeDraft],
) -> bool:
    """Create the example bot unless it exists. Returns whether it was created."""
    async with uow_factory() as uow:
        if await uow.bots.get(EXAMPLE_BOT_ID) is not None:
            return False
        now = clock.now()
        if await uow.users.get(EXAMPLE_OWNER_ID) is None:
            owner = User.register(
                id=EXAMPLE_OWNER_ID,
                email=EXAMPLE_OWNER_EMAIL,
                display_name="Example bot owner",
                password_hash=UNUSABLE_PASSWORD_HASH,
                now=now,
                role=Role.MEMBER,
            )
            owner.set_active(False, now)
            await uow.users.add(owner)
        bot = Bot.create(
            id=EXAMPLE_BOT_ID,
            owner_id=EXAMPLE_OWNER_ID,
            now=now,
            name=settings.name,
            description=settings.description,
            greeting=settings.greeting,
            fallback_message=settings.fallback_message,
        )
        bot.publish(now)
        await uow.bots.add(bot)
        await uow.knowledge.add_many(
            [
                KnowledgeEntry.create(
                    id=UUID(int=EXAMPLE_BOT_ID.int + index + 1),
                    bot_id=EXAMPLE_BOT_ID,
                    question=draft.question,
                    answer=draft.answer,
                    examples=list(draft.examples),
                    tags=list(draft.tags),
                    now=now,
                )
                for index, draft in enumerate(knowledge)
            ]
        )
        bot.knowledge_revision = 1
        await uow.commit()
    return True

"""Who may read, write and manage what: the one place every use case asks.

Anything a caller may not see answers NotFound, never Forbidden, so another owner's bot or
conversation is never revealed to exist. Forbidden is for what the caller can see but not do.
"""

from __future__ import annotations

from uuid import UUID

from application.actors import Actor, BotKeyActor, UserActor
from application.errors import Forbidden, NotFound
from application.ports import UnitOfWork
from domain.bots import Bot, BotStatus
from domain.conversations import Conversation


def require_user(actor: Actor) -> UserActor:
    if isinstance(actor, BotKeyActor):
        raise Forbidden("Bot API keys may only chat with their bot.")
    return actor


def may_manage(actor: Actor, bot: Bot) -> bool:
    return isinstance(actor, UserActor) and (actor.is_admin or bot.owner_id == actor.user_id)


async def manageable_bot(uow: UnitOfWork, actor: Actor, bot_id: UUID) -> Bot:
    """The bot, if the caller may manage it (owner or admin). Anyone else, and bot keys, get
    NotFound."""
    bot = await uow.bots.get(bot_id)
    if bot is None or not may_manage(actor, bot):
        raise NotFound("No such bot.")
    return bot


async def chattable_bot(uow: UnitOfWork, actor: Actor, bot_id: UUID) -> Bot:
    """Users chat with their own bots and published ones; a bot key only with its bot."""
    bot = await uow.bots.get(bot_id)
    if bot is None:
        raise NotFound("No such bot.")
    if isinstance(actor, BotKeyActor):
        if actor.bot_id != bot.id:
            raise NotFound("No such bot.")
    elif not (bot.status is BotStatus.PUBLISHED or may_manage(actor, bot)):
        raise NotFound("No such bot.")
    return bot


def holds(actor: Actor, conversation: Conversation) -> bool:
    """The one who holds a conversation: the user who opened it, or the bot key that opened it
    for a person of its own (`external_user_id`)."""
    if isinstance(actor, BotKeyActor):
        return conversation.bot_id == actor.bot_id and conversation.user_id is None
    return conversation.user_id == actor.user_id


async def readable_conversation(
    uow: UnitOfWork, actor: Actor, conversation_id: UUID, *, lock: bool = False
) -> Conversation:
    """Its holder, the bot's owner and admins may read; everyone else gets NotFound. With
    `lock`, the conversation's row stays locked until the unit of work ends."""
    if lock:
        conversation = await uow.conversation_log.lock(conversation_id)
    else:
        conversation = await uow.conversations.get(conversation_id)
    if conversation is None:
        raise NotFound("No such conversation.")
    if holds(actor, conversation):
        return conversation
    if isinstance(actor, UserActor):
        if actor.is_admin:
            return conversation
        bot = await uow.bots.get(conversation.bot_id)
        if bot is not None and bot.owner_id == actor.user_id:
            return conversation
    raise NotFound("No such conversation.")


async def writable_conversation(
    uow: UnitOfWork, actor: Actor, conversation_id: UUID, *, lock: bool = False
) -> Conversation:
    """Only the holder writes; the bot's owner reads other people's conversations only."""
    conversation = await readable_conversation(uow, actor, conversation_id, lock=lock)
    if not holds(actor, conversation):
        raise Forbidden("Only the person who holds this conversation may change it.")
    return conversation

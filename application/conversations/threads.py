"""Conversations as threads: open, list, read, rename, close, delete, and their history."""

from __future__ import annotations

from uuid import UUID

from application.access import (
    chattable_bot,
    holds,
    manageable_bot,
    readable_conversation,
    writable_conversation,
)
from application.actors import Actor, BotKeyActor, UserActor
from application.errors import Forbidden
from application.pagination import Keyset, Page, clamp_limit, decode_cursor, paginate
from application.ports import Clock, ConversationFilter, IdGenerator, UnitOfWorkFactory
from domain.conversations import Conversation, ConversationStatus, Message, MessageRole


class Threads:
    def __init__(self, *, uow_factory: UnitOfWorkFactory, clock: Clock, ids: IdGenerator) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._ids = ids

    async def start_conversation(
        self,
        actor: Actor,
        bot_id: UUID,
        *,
        title: str = "",
        external_user_id: str | None = None,
        with_greeting: bool = True,
    ) -> Conversation:
        """Open a conversation; the bot's greeting, if any, is its first message. A bot key
        tags it with the `external_user_id` of the person it serves."""
        async with self._uow_factory() as uow:
            bot = await chattable_bot(uow, actor, bot_id)
            bot.ensure_accepts_messages()
            now = self._clock.now()
            conversation = Conversation.start(
                id=self._ids.new_id(),
                bot_id=bot.id,
                now=now,
                user_id=actor.user_id if isinstance(actor, UserActor) else None,
                external_user_id=external_user_id,
                title=title,
            )
            await uow.conversations.add(conversation)
            if with_greeting and bot.greeting.strip():
                greeting = conversation.append(
                    message_id=self._ids.new_id(),
                    role=MessageRole.ASSISTANT,
                    content=bot.greeting,
                    now=now,
                    metadata={"engine": "greeting", "greeting": True},
                )
                await uow.conversation_log.append(conversation, [greeting])
            await uow.commit()
        return conversation

    async def list_conversations(
        self,
        actor: Actor,
        *,
        bot_id: UUID | None = None,
        status: ConversationStatus | None = None,
        external_user_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Conversation]:
        """The caller's conversations, newest activity first. For a bot key: the conversations
        it opened for its bot, optionally for one `external_user_id`."""
        if isinstance(actor, BotKeyActor):
            if bot_id is not None and bot_id != actor.bot_id:
                return Page([], None)
            flt = ConversationFilter(
                bot_id=actor.bot_id,
                only_key_opened=True,
                status=status,
                external_user_id=external_user_id,
            )
        else:
            flt = ConversationFilter(
                user_id=actor.user_id,
                bot_id=bot_id,
                status=status,
                external_user_id=external_user_id,
            )
        return await self._page(flt, limit, cursor)

    async def list_bot_conversations(
        self,
        actor: Actor,
        bot_id: UUID,
        *,
        status: ConversationStatus | None = None,
        external_user_id: str | None = None,
        with_down_feedback: bool = False,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Conversation]:
        """The bot's owner (and admins): every conversation with the bot, whoever held it."""
        async with self._uow_factory(read_only=True) as uow:
            await manageable_bot(uow, actor, bot_id)
        flt = ConversationFilter(
            bot_id=bot_id,
            status=status,
            external_user_id=external_user_id,
            with_down_feedback=with_down_feedback,
        )
        return await self._page(flt, limit, cursor)

    async def _page(
        self, flt: ConversationFilter, limit: int | None, cursor: str | None
    ) -> Page[Conversation]:
        size = clamp_limit(limit)
        async with self._uow_factory(read_only=True) as uow:
            rows = await uow.conversations.list_page(
                flt, after=decode_cursor(cursor), limit=size + 1
            )
        return paginate(rows, size, lambda c: Keyset(c.last_message_at, c.id))

    async def get_conversation(self, actor: Actor, conversation_id: UUID) -> Conversation:
        async with self._uow_factory(read_only=True) as uow:
            return await readable_conversation(uow, actor, conversation_id)

    async def rename_conversation(
        self, actor: Actor, conversation_id: UUID, title: str
    ) -> Conversation:
        async with self._uow_factory() as uow:
            conversation = await writable_conversation(uow, actor, conversation_id, lock=True)
            conversation.rename(title, self._clock.now())
            await uow.commit()
        return conversation

    async def close_conversation(self, actor: Actor, conversation_id: UUID) -> Conversation:
        """No further messages (409 after)."""
        async with self._uow_factory() as uow:
            conversation = await writable_conversation(uow, actor, conversation_id, lock=True)
            conversation.close(self._clock.now())
            await uow.commit()
        return conversation

    async def delete_conversation(self, actor: Actor, conversation_id: UUID) -> None:
        async with self._uow_factory() as uow:
            conversation = await readable_conversation(uow, actor, conversation_id, lock=True)
            admin = isinstance(actor, UserActor) and actor.is_admin
            if not (holds(actor, conversation) or admin):
                raise Forbidden("Only the person who holds this conversation may delete it.")
            await uow.conversations.delete(conversation)
            await uow.commit()

    async def list_messages(
        self,
        actor: Actor,
        conversation_id: UUID,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Message]:
        """History, oldest first."""
        size = clamp_limit(limit)
        after = decode_cursor(cursor)
        after_seq = int(after.value) if after is not None and isinstance(after.value, int) else 0
        async with self._uow_factory(read_only=True) as uow:
            await readable_conversation(uow, actor, conversation_id)
            rows = await uow.messages.list_page(
                conversation_id, after_seq=after_seq, limit=size + 1
            )
        return paginate(rows, size, lambda m: Keyset(m.seq, m.id))

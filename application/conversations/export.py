"""A conversation whole, for download: the data; its formats belong to the entrypoint."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from application.access import readable_conversation
from application.actors import Actor
from application.errors import NotFound
from application.ports import UnitOfWorkFactory
from domain.bots import Bot
from domain.conversations import Conversation, Message

EXPORT_BATCH = 500


@dataclass(frozen=True)
class ConversationExport:
    conversation: Conversation
    bot: Bot
    messages: list[Message]


class Exports:
    def __init__(self, *, uow_factory: UnitOfWorkFactory) -> None:
        self._uow_factory = uow_factory

    async def export_conversation(self, actor: Actor, conversation_id: UUID) -> ConversationExport:
        """The whole conversation with every message, for download."""
        async with self._uow_factory(read_only=True) as uow:
            conversation = await readable_conversation(uow, actor, conversation_id)
            bot = await uow.bots.get(conversation.bot_id)
            if bot is None:
                raise NotFound("No such conversation.")
            messages: list[Message] = []
            while True:
                after = messages[-1].seq if messages else 0
                batch = await uow.messages.list_page(
                    conversation.id, after_seq=after, limit=EXPORT_BATCH
                )
                messages.extend(batch)
                if len(batch) < EXPORT_BATCH:
                    break
        return ConversationExport(conversation, bot, messages)

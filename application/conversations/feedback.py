"""Feedback: the person holding a conversation rates the bot's replies up or down."""

from __future__ import annotations

from uuid import UUID

from application.access import writable_conversation
from application.actors import Actor
from application.errors import Conflict, DuplicateKey, NotFound
from application.ports import Clock, UnitOfWorkFactory
from domain.conversations import Feedback, MessageRole, Rating


class ReplyRatings:
    def __init__(self, *, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow_factory = uow_factory
        self._clock = clock

    async def rate_reply(
        self, actor: Actor, message_id: UUID, rating: Rating, comment: str = ""
    ) -> Feedback:
        """Rate a reply up or down; rating again replaces the earlier rating."""
        async with self._uow_factory() as uow:
            message = await uow.messages.get(message_id)
            if message is None:
                raise NotFound("No such message.")
            await writable_conversation(uow, actor, message.conversation_id)
            if message.role is not MessageRole.ASSISTANT:
                raise Conflict("Only the bot's replies can be rated.")
            now = self._clock.now()
            feedback = await uow.feedback.get(message_id)
            if feedback is None:
                feedback = Feedback(
                    message_id=message.id,
                    conversation_id=message.conversation_id,
                    rating=rating,
                    comment=comment,
                    created_at=now,
                    updated_at=now,
                )
                await uow.feedback.add(feedback)
            else:
                feedback.change(rating, comment, now)
            try:
                await uow.commit()
            except DuplicateKey as error:
                raise Conflict("The reply was rated concurrently; try again.") from error
        return feedback

"""Conversations, their gap-free message sequence, and feedback on replies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.errors import ConversationClosed, InvalidValue

MAX_MESSAGE_LENGTH = 8_000
MAX_TITLE_LENGTH = 200


class ConversationStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class MessageRole(StrEnum):
    USER = "user"
    ASSISTANT = "assistant"


class Rating(StrEnum):
    UP = "up"
    DOWN = "down"


def _clean_title(raw: str) -> str:
    title = raw.strip()
    if len(title) > MAX_TITLE_LENGTH:
        raise InvalidValue("title", f"at most {MAX_TITLE_LENGTH} characters")
    return title


@dataclass(eq=False)
class Message:
    id: UUID
    conversation_id: UUID
    seq: int
    role: MessageRole
    content: str
    metadata: dict[str, Any]
    created_at: datetime


@dataclass(eq=False)
class Conversation:
    """Holds the message counter so that every message gets the next number, with no gaps.

    Appending goes through the conversation (not straight to a message store) so that the counter
    and the closed-state rule are one invariant, checked under the conversation's row lock.
    """

    id: UUID
    bot_id: UUID
    user_id: UUID | None
    external_user_id: str | None
    title: str
    status: ConversationStatus
    message_count: int
    last_message_at: datetime
    created_at: datetime
    updated_at: datetime

    @classmethod
    def start(
        cls,
        *,
        id: UUID,
        bot_id: UUID,
        now: datetime,
        user_id: UUID | None = None,
        external_user_id: str | None = None,
        title: str = "",
    ) -> Conversation:
        return cls(
            id=id,
            bot_id=bot_id,
            user_id=user_id,
            external_user_id=external_user_id,
            title=_clean_title(title),
            status=ConversationStatus.OPEN,
            message_count=0,
            last_message_at=now,
            created_at=now,
            updated_at=now,
        )

    @property
    def is_open(self) -> bool:
        return self.status is ConversationStatus.OPEN

    def ensure_open(self) -> None:
        if not self.is_open:
            raise ConversationClosed("this conversation is closed")

    def append(
        self,
        *,
        message_id: UUID,
        role: MessageRole,
        content: str,
        now: datetime,
        metadata: dict[str, Any] | None = None,
    ) -> Message:
        self.ensure_open()
        if role is MessageRole.USER:
            if not 1 <= len(content) <= MAX_MESSAGE_LENGTH:
                raise InvalidValue("content", f"must be 1 to {MAX_MESSAGE_LENGTH} characters long")
            if not content.strip():
                raise InvalidValue("content", "must not be only whitespace")
        return self._next(message_id, role, content, now, metadata)

    def record_reply(
        self,
        *,
        answering: Message,
        message_id: UUID,
        content: str,
        now: datetime,
        metadata: dict[str, Any] | None = None,
    ) -> Message:
        """The bot's reply to a message this conversation accepted. It is recorded even if the
        conversation was closed while the bot was answering: closing refuses new messages, not
        the answer to one already taken."""
        if (
            answering.conversation_id != self.id
            or answering.role is not MessageRole.USER
            or answering.seq > self.message_count
        ):
            raise InvalidValue("answering", "is not a user message of this conversation")
        return self._next(message_id, MessageRole.ASSISTANT, content, now, metadata)

    def _next(
        self,
        message_id: UUID,
        role: MessageRole,
        content: str,
        now: datetime,
        metadata: dict[str, Any] | None,
    ) -> Message:
        self.message_count += 1
        self.last_message_at = now
        self.updated_at = now
        return Message(
            id=message_id,
            conversation_id=self.id,
            seq=self.message_count,
            role=role,
            content=content,
            metadata=dict(metadata or {}),
            created_at=now,
        )

    def rename(self, title: str, now: datetime) -> None:
        self.title = _clean_title(title)
        self.updated_at = now

    def close(self, now: datetime) -> None:
        if self.is_open:
            self.status = ConversationStatus.CLOSED
            self.updated_at = now


@dataclass(eq=False)
class Feedback:
    """One rating per reply; rating again replaces it."""

    message_id: UUID
    conversation_id: UUID
    rating: Rating
    comment: str
    created_at: datetime
    updated_at: datetime

    def change(self, rating: Rating, comment: str, now: datetime) -> None:
        self.rating = rating
        self.comment = comment
        self.updated_at = now

"""A conversation exported whole: the JSON document and its Markdown rendering.

Formatting is the entrypoint's business; the use case hands over the conversation, its bot and
every message. Times are RFC 3339 UTC with `Z`, as in every other answer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel

from application.conversations import ConversationExport
from domain.conversations import MessageRole


class ExportedConversation(BaseModel):
    id: UUID
    bot_id: UUID
    bot_name: str
    title: str
    status: Literal["open", "closed"]
    external_user_id: str | None
    created_at: datetime
    last_message_at: datetime
    message_count: int


class ExportedMessage(BaseModel):
    id: UUID
    seq: int
    role: Literal["user", "assistant"]
    content: str
    created_at: datetime
    metadata: dict[str, Any]


class ConversationExportOut(BaseModel):
    conversation: ExportedConversation
    messages: list[ExportedMessage]


def export_document(export: ConversationExport) -> ConversationExportOut:
    c = export.conversation
    return ConversationExportOut(
        conversation=ExportedConversation(
            id=c.id,
            bot_id=c.bot_id,
            bot_name=export.bot.name,
            title=c.title,
            status=c.status.value,
            external_user_id=c.external_user_id,
            created_at=c.created_at,
            last_message_at=c.last_message_at,
            message_count=c.message_count,
        ),
        messages=[
            ExportedMessage(
                id=m.id,
                seq=m.seq,
                role=m.role.value,
                content=m.content,
                created_at=m.created_at,
                metadata=m.metadata,
            )
            for m in export.messages
        ],
    )


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def export_markdown(export: ConversationExport) -> str:
    conversation = export.conversation
    lines = [
        f"# {conversation.title or 'Conversation'} with {export.bot.name}",
        "",
        f"- id: {conversation.id}",
        f"- started: {rfc3339(conversation.created_at)}",
        f"- status: {conversation.status.value}",
        "",
    ]
    for message in export.messages:
        who = export.bot.name if message.role is MessageRole.ASSISTANT else "User"
        lines += [f"**{who}** ({rfc3339(message.created_at)}):", "", message.content, ""]
    return "\n".join(lines)

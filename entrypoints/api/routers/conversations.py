"""Conversations as threads: open, list, read, rename, close, delete, export; a bot's stats."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Response, status
from fastapi.responses import PlainTextResponse
from pydantic import Field

from domain.conversations import MAX_TITLE_LENGTH, ConversationStatus
from entrypoints.api.dependencies import Conversations, CurrentActor
from entrypoints.api.errors import problem_responses
from entrypoints.api.export import ConversationExportOut, export_document, export_markdown
from entrypoints.api.schemas import Cursor, Limit, Out, PageOut, StrictIn, page_of

router = APIRouter(tags=["conversations"])
StatusFilter = Annotated[Literal["open", "closed"] | None, Query(alias="status")]
ExternalUser = Annotated[str | None, Query(max_length=200)]


class ConversationIn(StrictIn):
    title: str = Field("", max_length=MAX_TITLE_LENGTH)
    external_user_id: str | None = Field(
        None,
        max_length=200,
        description="Who the conversation is for, in the calling service's terms (bot keys).",
    )


class ConversationPatchIn(StrictIn):
    title: str = Field(max_length=MAX_TITLE_LENGTH)


class ConversationOut(Out):
    id: UUID
    bot_id: UUID
    user_id: UUID | None
    external_user_id: str | None
    title: str
    status: Literal["open", "closed"]
    message_count: int
    last_message_at: datetime
    created_at: datetime
    updated_at: datetime


class BotStatsOut(Out):
    conversations: int
    messages: int
    replies: int
    fallback_rate: float = Field(description="Share of replies that were the fallback message.")
    feedback_up: int
    feedback_down: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None


# --- under a bot --------------------------------------------------------------------------------


@router.post(
    "/api/v1/bots/{bot_id}/conversations",
    status_code=status.HTTP_201_CREATED,
    response_model=ConversationOut,
    responses=problem_responses(401, 404, 409, 422),
)
async def start_conversation(
    bot_id: UUID,
    actor: CurrentActor,
    conversations: Conversations,
    body: ConversationIn | None = None,
) -> ConversationOut:
    """Open a conversation with a bot (your own, or a published one; a bot key: its bot).
    The bot's greeting, if any, is its first message. Archived bots answer 409."""
    body = body or ConversationIn()
    conversation = await conversations.threads.start_conversation(
        actor, bot_id, title=body.title, external_user_id=body.external_user_id
    )
    return ConversationOut.model_validate(conversation)


@router.get(
    "/api/v1/bots/{bot_id}/conversations",
    response_model=PageOut[ConversationOut],
    responses=problem_responses(400, 401, 404, 422),
)
async def list_bot_conversations(
    bot_id: UUID,
    actor: CurrentActor,
    conversations: Conversations,
    status_: StatusFilter = None,
    external_user_id: ExternalUser = None,
    feedback: Annotated[
        Literal["down"] | None, Query(description="`down`: only those with a down-rated reply.")
    ] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> PageOut[ConversationOut]:
    """For the bot's owner (and admins): every conversation with the bot, whoever held it,
    newest activity first. The owner may read these conversations, not write in them."""
    page = await conversations.threads.list_bot_conversations(
        actor,
        bot_id,
        status=ConversationStatus(status_) if status_ else None,
        external_user_id=external_user_id,
        with_down_feedback=feedback == "down",
        limit=limit,
        cursor=cursor,
    )
    return page_of(ConversationOut, page)


@router.get(
    "/api/v1/bots/{bot_id}/stats",
    response_model=BotStatsOut,
    responses=problem_responses(401, 404),
)
async def bot_stats(bot_id: UUID, actor: CurrentActor, conversations: Conversations) -> BotStatsOut:
    """Conversations, messages, fallback rate, feedback up/down, reply latency p50/p95."""
    return BotStatsOut.model_validate(await conversations.stats.bot_stats(actor, bot_id))


# --- conversations ------------------------------------------------------------------------------


@router.get(
    "/api/v1/conversations",
    response_model=PageOut[ConversationOut],
    responses=problem_responses(400, 401, 422),
)
async def list_conversations(
    actor: CurrentActor,
    conversations: Conversations,
    bot_id: UUID | None = None,
    status_: StatusFilter = None,
    external_user_id: ExternalUser = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> PageOut[ConversationOut]:
    """The caller's conversations, newest activity first."""
    page = await conversations.threads.list_conversations(
        actor,
        bot_id=bot_id,
        status=ConversationStatus(status_) if status_ else None,
        external_user_id=external_user_id,
        limit=limit,
        cursor=cursor,
    )
    return page_of(ConversationOut, page)


@router.get(
    "/api/v1/conversations/{conversation_id}",
    response_model=ConversationOut,
    responses=problem_responses(401, 404),
)
async def read_conversation(
    conversation_id: UUID, actor: CurrentActor, conversations: Conversations
) -> ConversationOut:
    """One conversation, with `message_count` and `last_message_at`."""
    return ConversationOut.model_validate(
        await conversations.threads.get_conversation(actor, conversation_id)
    )


@router.patch(
    "/api/v1/conversations/{conversation_id}",
    response_model=ConversationOut,
    responses=problem_responses(401, 403, 404, 422),
)
async def rename_conversation(
    conversation_id: UUID,
    body: ConversationPatchIn,
    actor: CurrentActor,
    conversations: Conversations,
) -> ConversationOut:
    """Rename."""
    conversation = await conversations.threads.rename_conversation(
        actor, conversation_id, body.title
    )
    return ConversationOut.model_validate(conversation)


@router.delete(
    "/api/v1/conversations/{conversation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404),
)
async def delete_conversation(
    conversation_id: UUID, actor: CurrentActor, conversations: Conversations
) -> Response:
    """Delete the conversation and its messages."""
    await conversations.threads.delete_conversation(actor, conversation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/api/v1/conversations/{conversation_id}/close",
    response_model=ConversationOut,
    responses=problem_responses(401, 403, 404),
)
async def close_conversation(
    conversation_id: UUID, actor: CurrentActor, conversations: Conversations
) -> ConversationOut:
    """No further messages: posting answers 409 afterwards."""
    return ConversationOut.model_validate(
        await conversations.threads.close_conversation(actor, conversation_id)
    )


# --- messages -----------------------------------------------------------------------------------


@router.get(
    "/api/v1/conversations/{conversation_id}/export",
    response_model=ConversationExportOut,
    responses={
        200: {"content": {"text/markdown": {"schema": {"type": "string"}}}},
        **problem_responses(401, 404, 422),
    },
)
async def export_conversation(
    conversation_id: UUID,
    actor: CurrentActor,
    conversations: Conversations,
    format_: Annotated[Literal["json", "markdown"], Query(alias="format")] = "json",
) -> ConversationExportOut | PlainTextResponse:
    """The whole conversation: JSON (default) or `?format=markdown`."""
    export = await conversations.exports.export_conversation(actor, conversation_id)
    if format_ == "markdown":
        return PlainTextResponse(export_markdown(export), media_type="text/markdown")
    return export_document(export)

"""Messages: post one and get the bot's reply (blocking or SSE), read the history, rate a reply."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Header, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import Field

from domain.conversations import MAX_MESSAGE_LENGTH, Rating
from entrypoints.api.dependencies import Conversations, CurrentActor
from entrypoints.api.errors import problem_responses
from entrypoints.api.exchange import Exchange, exchange_settings
from entrypoints.api.schemas import Cursor, Limit, Out, PageOut, StrictIn

router = APIRouter(tags=["messages"])


class MessageIn(StrictIn):
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_LENGTH)


class MessageOut(Out):
    id: UUID
    conversation_id: UUID
    seq: int = Field(description="Position in the conversation: 1, 2, 3, ... with no gaps.")
    role: Literal["user", "assistant"]
    content: str
    created_at: datetime
    metadata: dict[str, Any] = Field(
        description="On replies: `engine`, `confidence` (0-1), `fallback`, `sources` "
        "(knowledge entry ids) and `latency_ms`, plus engine-specific fields such as `usage`."
    )


class ExchangeOut(Out):
    user_message: MessageOut
    reply: MessageOut


class FeedbackIn(StrictIn):
    rating: Literal["up", "down"]
    comment: str = Field("", max_length=2_000)


class FeedbackOut(Out):
    message_id: UUID
    rating: Literal["up", "down"]
    comment: str
    created_at: datetime
    updated_at: datetime


@router.post(
    "/api/v1/conversations/{conversation_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=ExchangeOut,
    responses={
        **problem_responses(401, 403, 404, 409, 413, 422, 502, 504),
        201: {
            "description": "The stored message and the bot's reply; with `Accept: "
            'text/event-stream`, SSE events `delta` (`{"content"}`) then `done` (the reply), '
            "each with an `id` (`<user message id>:<1, 2, ...>`), and `: keep-alive` comments "
            "while the engine sends nothing.",
            "content": {"text/event-stream": {}},
        },
    },
)
async def post_message(
    conversation_id: UUID,
    body: MessageIn,
    request: Request,
    response: Response,
    actor: CurrentActor,
    conversations: Conversations,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=255,
            description="Retries with the same key (same caller, 24 h) replay the first answer "
            "and store nothing new; a replayed answer carries `Idempotent-Replayed: true`.",
        ),
    ] = None,
) -> ExchangeOut | StreamingResponse:
    """Send a message; the bot answers. Both are stored. If the engine fails, your message is
    kept, the answer is 502/504, and the conversation stays usable. Closed conversations and
    archived bots answer 409."""
    exchange = await Exchange.begin(
        conversations.chat.post_message(
            actor, conversation_id, body.content, idempotency_key=idempotency_key
        ),
        exchange_settings(request),
    )
    if "text/event-stream" not in request.headers.get("accept", ""):
        response.headers.update(exchange.headers)
        return ExchangeOut(
            user_message=MessageOut.model_validate(exchange.user_message),
            reply=MessageOut.model_validate(await exchange.reply()),
        )
    return StreamingResponse(
        exchange.server_sent_events(lambda m: MessageOut.model_validate(m).model_dump(mode="json")),
        status_code=status.HTTP_201_CREATED,
        media_type="text/event-stream",
        headers={**exchange.headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/api/v1/conversations/{conversation_id}/messages",
    response_model=PageOut[MessageOut],
    responses=problem_responses(400, 401, 404),
)
async def list_messages(
    conversation_id: UUID,
    actor: CurrentActor,
    conversations: Conversations,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> PageOut[MessageOut]:
    """History, oldest first."""
    page = await conversations.threads.list_messages(
        actor, conversation_id, limit=limit, cursor=cursor
    )
    # From each entity's fields as stored (a dataclass sets them all): less than half the cost
    # of reading 20 x 7 attributes one by one, on the most frequent read of a chat client.
    return PageOut[MessageOut](
        items=[MessageOut.model_validate(vars(m)) for m in page.items],
        next_cursor=page.next_cursor,
    )


@router.put(
    "/api/v1/messages/{message_id}/feedback",
    response_model=FeedbackOut,
    responses=problem_responses(401, 403, 404, 409, 422),
)
async def rate_reply(
    message_id: UUID, body: FeedbackIn, actor: CurrentActor, conversations: Conversations
) -> FeedbackOut:
    """Rate a reply up or down (with an optional comment); rating again replaces it."""
    feedback = await conversations.ratings.rate_reply(
        actor, message_id, Rating(body.rating), body.comment
    )
    return FeedbackOut.model_validate(feedback)

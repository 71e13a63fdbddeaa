"""The OpenAI-compatible surface, `/v1`: every OpenAI SDK and tool can chat with our bots.

`model` is a bot id. A call opens a new stored conversation unless the `X-Conversation-Id`
header names one to continue; the answer's `X-Conversation-Id` header says which it was.
Errors here use OpenAI's envelope (`{"error": {"message", "type", "param", "code"}}`).
"""

import time
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from application.errors import NotFound
from domain.conversations import MessageRole
from entrypoints.api.dependencies import Conversations, CurrentActor
from entrypoints.api.exchange import Exchange, exchange_settings

router = APIRouter(prefix="/v1", tags=["openai-compatible"])

OPENAI_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "model": None}
    for status, description in {
        400: "Invalid request (OpenAI error envelope)",
        401: "Invalid credentials",
        404: "No such model (bot) or conversation",
        409: "The bot is archived or the conversation closed",
        422: "Invalid request body",
        502: "The bot's upstream model failed",
        504: "The bot's upstream model timed out",
    }.items()
}


# OpenAI's schema wants an owner; the bot owner's user id would hand every member the ids of
# the accounts (the admin's among them) that publish bots.
MODEL_OWNER = "chatbots"


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = Field(MODEL_OWNER, description="Always `chatbots`: no user is revealed.")
    name: str = Field(description="The bot's name (an extension: OpenAI has no such field).")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]


class ChatMessageIn(BaseModel):
    # OpenAI clients send fields we do not use (name, tool_calls, ...): accept and ignore them.
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""


class ChatCompletionIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(description="The bot id (see GET /v1/models).")
    messages: list[ChatMessageIn] = Field(min_length=1, max_length=1_000)
    stream: bool = False
    user: str | None = Field(
        None, max_length=200, description="Stored as the conversation's `external_user_id`."
    )


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChoiceOut(BaseModel):
    index: int = 0
    message: ChatMessageOut
    finish_reason: Literal["stop"] = "stop"


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletionOut(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChoiceOut]
    usage: UsageOut | None = None
    conversation_id: str = Field(description="The stored conversation (an extension).")
    metadata: dict[str, Any] = Field(description="The reply's metadata (an extension).")


@router.get("/models", response_model=ModelList, responses=OPENAI_ERRORS)
async def list_models(actor: CurrentActor, conversations: Conversations) -> ModelList:
    """The bots this credential may chat with; a model `id` is a bot id."""
    bots = await conversations.chat.chattable_bots(actor)
    return ModelList(
        data=[
            ModelOut(
                id=str(bot.id),
                created=int(bot.created_at.timestamp()),
                name=bot.name,
            )
            for bot in bots
        ]
    )


def _turns(messages: list[ChatMessageIn]) -> list[tuple[MessageRole, str]]:
    # System prompts come from the bot's own settings; tool traffic has no place in a chat log.
    roles = {"user": MessageRole.USER, "assistant": MessageRole.ASSISTANT}
    return [(roles[m.role], m.text()) for m in messages if m.role in roles]


def _usage(metadata: dict[str, Any]) -> UsageOut | None:
    usage = metadata.get("usage")
    if isinstance(usage, dict) and {"prompt_tokens", "completion_tokens"} <= set(usage):
        prompt, completion = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        return UsageOut(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=int(usage.get("total_tokens", prompt + completion)),
        )
    return None


@router.post(
    "/chat/completions",
    response_model=ChatCompletionOut,
    responses={
        **OPENAI_ERRORS,
        200: {
            "description": "A chat.completion; with `stream: true`, `chat.completion.chunk` "
            "server-sent events ending with `data: [DONE]`.",
            "content": {"text/event-stream": {}},
        },
    },
)
async def chat_completions(
    body: ChatCompletionIn,
    actor: CurrentActor,
    conversations: Conversations,
    request: Request,
    response: Response,
    x_conversation_id: Annotated[
        UUID | None,
        Header(description="Continue this stored conversation instead of opening a new one."),
    ] = None,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> ChatCompletionOut | StreamingResponse:
    """Chat with a bot (`model` = bot id) the way OpenAI's API does, blocking or streaming."""
    try:
        bot_id = UUID(body.model)
    except ValueError as error:
        raise NotFound(f"The model '{body.model[:100]}' does not exist.") from error
    turns = _turns(body.messages)
    conversation_id, events = await conversations.chat.complete_chat(
        actor,
        bot_id,
        turns,
        conversation_id=x_conversation_id,
        external_user_id=body.user,
        idempotency_key=idempotency_key,
    )
    exchange = await Exchange.begin(events, exchange_settings(request))
    headers = {"X-Conversation-Id": str(conversation_id), **exchange.headers}
    created = int(time.time())
    if body.stream:
        return StreamingResponse(
            exchange.openai_chunks(body.model, created),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    reply = await exchange.reply()
    response.headers.update(headers)
    return ChatCompletionOut(
        id=f"chatcmpl-{reply.id.hex}",
        created=created,
        model=body.model,
        choices=[ChoiceOut(message=ChatMessageOut(content=reply.content))],
        usage=_usage(reply.metadata),
        conversation_id=str(conversation_id),
        metadata=reply.metadata,
    )

"""`/api/v1/bots`: create, read, change, publish and archive bots. Routes only translate HTTP."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Response, status
from pydantic import Field

from application.bots import BotSettings
from domain.bots import (
    DEFAULT_FALLBACK_MESSAGE,
    MAX_BOT_NAME_LENGTH,
    BotStatus,
    EngineKind,
)
from entrypoints.api.dependencies import Bots, CurrentUser
from entrypoints.api.errors import problem_responses
from entrypoints.api.etags import expected_version, with_etag
from entrypoints.api.schemas import (
    Cursor,
    IfMatch,
    Limit,
    NoNulls,
    Out,
    PageOut,
    StrictIn,
    page_of,
)

router = APIRouter(prefix="/api/v1/bots", tags=["bots"])

EngineName = Literal["knowledge", "openai"]
LongText = Annotated[str, Field(max_length=8_000)]
ShortText = Annotated[str, Field(max_length=2_000)]


class BotIn(StrictIn):
    name: str = Field(min_length=1, max_length=MAX_BOT_NAME_LENGTH, examples=["Support bot"])
    description: ShortText = ""
    system_prompt: LongText = ""
    greeting: ShortText = Field("", examples=["Hi! Ask me anything about our product."])
    fallback_message: ShortText = DEFAULT_FALLBACK_MESSAGE
    engine: EngineName = "knowledge"
    engine_config: dict[str, Any] = Field(
        default_factory=dict,
        description='knowledge: `{"threshold": 0-1}`; openai: `{"base_url", "model", '
        '"temperature", "max_tokens", "api_key_env", "context_entries", "timeout_seconds"}`.',
    )


class BotPatchIn(NoNulls):
    name: str | None = Field(None, min_length=1, max_length=MAX_BOT_NAME_LENGTH)
    description: ShortText | None = None
    system_prompt: LongText | None = None
    greeting: ShortText | None = None
    fallback_message: ShortText | None = None
    engine: EngineName | None = None
    engine_config: dict[str, Any] | None = None


class PublicBotOut(Out):
    """What every signed-in user may know of a published bot."""

    id: UUID
    name: str
    description: str
    greeting: str
    engine: EngineName
    status: Literal["published"]


class BotOut(Out):
    id: UUID
    owner_id: UUID
    name: str
    description: str
    system_prompt: str
    greeting: str
    fallback_message: str
    engine: EngineName
    engine_config: dict[str, Any]
    status: Literal["draft", "published", "archived"]
    version: int
    knowledge_revision: int
    created_at: datetime
    updated_at: datetime


# --- bots -------------------------------------------------------------------------------------

BOT_ERRORS = problem_responses(401, 403, 404)


def _bot(response: Response, bot: object) -> BotOut:
    return with_etag(response, BotOut.model_validate(bot))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=BotOut,
    responses=problem_responses(401, 403, 422),
)
async def create_bot(body: BotIn, actor: CurrentUser, bots: Bots, response: Response) -> BotOut:
    """Create a draft bot owned by the caller (`status: "draft"`, `version: 1`)."""
    settings = BotSettings(**{**body.model_dump(), "engine": EngineKind(body.engine)})
    bot = await bots.create_bot(actor, settings)
    response.headers["Location"] = f"/api/v1/bots/{bot.id}"
    return _bot(response, bot)


@router.get("", response_model=PageOut[BotOut], responses=problem_responses(400, 401, 403, 422))
async def list_bots(
    actor: CurrentUser,
    bots: Bots,
    status_: Annotated[
        Literal["draft", "published", "archived"] | None, Query(alias="status")
    ] = None,
    q: Annotated[str | None, Query(max_length=100, description="Name contains.")] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> PageOut[BotOut]:
    """The caller's bots, newest first (admins: every bot)."""
    page = await bots.list_bots(
        actor,
        status=BotStatus(status_) if status_ else None,
        name_contains=q,
        limit=limit,
        cursor=cursor,
    )
    return page_of(BotOut, page)


@router.get("/{bot_id}", response_model=BotOut | PublicBotOut, responses=BOT_ERRORS)
async def read_bot(
    bot_id: UUID, actor: CurrentUser, bots: Bots, response: Response
) -> BotOut | PublicBotOut:
    """One bot. Its owner and admins read every field (with its `ETag`); any other signed-in
    user reads the public fields of a published bot, the one they may chat with; drafts and
    archived bots of others answer 404."""
    view = await bots.view_bot(actor, bot_id)
    if view.managed:
        return _bot(response, view.bot)
    return PublicBotOut.model_validate(view.bot)


@router.patch(
    "/{bot_id}", response_model=BotOut, responses=problem_responses(401, 403, 404, 412, 422)
)
async def update_bot(
    bot_id: UUID,
    body: BotPatchIn,
    actor: CurrentUser,
    bots: Bots,
    response: Response,
    if_match: IfMatch = None,
) -> BotOut:
    """Change settings. Send `If-Match` with the ETag you read: a stale one answers 412."""
    changes = body.model_dump(exclude_unset=True)
    if "engine" in changes:
        changes["engine"] = EngineKind(changes["engine"])
    bot = await bots.update_bot(actor, bot_id, changes, expected_version=expected_version(if_match))
    return _bot(response, bot)


@router.delete(
    "/{bot_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 412),
)
async def delete_bot(
    bot_id: UUID, actor: CurrentUser, bots: Bots, if_match: IfMatch = None
) -> Response:
    """Delete the bot with its knowledge, API keys, conversations and messages."""
    await bots.delete_bot(actor, bot_id, expected_version=expected_version(if_match))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{bot_id}/publish", response_model=BotOut, responses=problem_responses(401, 403, 404, 409)
)
async def publish_bot(bot_id: UUID, actor: CurrentUser, bots: Bots, response: Response) -> BotOut:
    """draft -> published: every signed-in user may chat with it. Archived bots answer 409."""
    return _bot(response, await bots.publish_bot(actor, bot_id))


@router.post("/{bot_id}/archive", response_model=BotOut, responses=BOT_ERRORS)
async def archive_bot(bot_id: UUID, actor: CurrentUser, bots: Bots, response: Response) -> BotOut:
    """-> archived: no new messages (409); existing conversations stay readable."""
    return _bot(response, await bots.archive_bot(actor, bot_id))

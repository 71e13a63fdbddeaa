"""`/api/v1/bots`: bots, their knowledge and their API keys. Routes only translate HTTP."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Header, Query, Response, status
from pydantic import Field, model_validator

from application.bots import MAX_BULK_ENTRIES, BotSettings
from domain.bots import (
    DEFAULT_FALLBACK_MESSAGE,
    MAX_ANSWER_LENGTH,
    MAX_BOT_NAME_LENGTH,
    MAX_EXAMPLES,
    MAX_QUESTION_LENGTH,
    MAX_TAGS,
    BotStatus,
    EngineKind,
    KnowledgeDraft,
)
from entrypoints.api.dependencies import Bots, CurrentActor
from entrypoints.api.errors import problem_responses
from entrypoints.api.etags import expected_version, set_etag
from entrypoints.api.schemas import Out, PageOut, StrictIn

router = APIRouter(prefix="/api/v1/bots", tags=["bots"])
IfMatch = Annotated[
    str | None,
    Header(description='The `ETag` last read, e.g. `"3"`; a stale one answers 412.'),
]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size.")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page.")]

EngineName = Literal["knowledge", "openai"]
LongText = Annotated[str, Field(max_length=8_000)]
ShortText = Annotated[str, Field(max_length=2_000)]


class NoNulls(StrictIn):
    """PATCH bodies: omit a field to keep it; `null` is not a value any of them can take."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = [name for name, value in data.items() if value is None]
            if nulls:
                raise ValueError(f"{', '.join(nulls)}: null is not allowed; omit the field")
        return data


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


Example = Annotated[str, Field(max_length=MAX_QUESTION_LENGTH)]
Tag = Annotated[str, Field(max_length=50)]


class KnowledgeIn(StrictIn):
    question: str = Field(min_length=1, max_length=MAX_QUESTION_LENGTH)
    answer: str = Field(min_length=1, max_length=MAX_ANSWER_LENGTH)
    examples: list[Example] = Field(
        default_factory=list,
        max_length=MAX_EXAMPLES,
        description="Other ways people ask the question; they improve matching.",
    )
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)

    def draft(self) -> KnowledgeDraft:
        return KnowledgeDraft(self.question, self.answer, list(self.examples), list(self.tags))


class KnowledgePatchIn(NoNulls):
    question: str | None = Field(None, min_length=1, max_length=MAX_QUESTION_LENGTH)
    answer: str | None = Field(None, min_length=1, max_length=MAX_ANSWER_LENGTH)
    examples: list[Example] | None = Field(None, max_length=MAX_EXAMPLES)
    tags: list[Tag] | None = Field(None, max_length=MAX_TAGS)


class KnowledgeOut(Out):
    id: UUID
    bot_id: UUID
    question: str
    answer: str
    examples: list[str]
    tags: list[str]
    version: int
    created_at: datetime
    updated_at: datetime


class BulkIn(StrictIn):
    entries: list[KnowledgeIn] = Field(min_length=1, max_length=MAX_BULK_ENTRIES)


class BulkOut(Out):
    created: int


class ApiKeyIn(StrictIn):
    name: str = Field("API key", max_length=100)


class ApiKeyOut(Out):
    id: UUID
    name: str
    prefix: str = Field(description="The public start of the key, to recognise it.")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(description="The whole secret key. Shown once: store it now.")


# --- bots -------------------------------------------------------------------------------------

BOT_ERRORS = problem_responses(401, 403, 404)


def _bot(response: Response, bot: object) -> BotOut:
    out = BotOut.model_validate(bot)
    set_etag(response, out.version)
    return out


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=BotOut,
    responses=problem_responses(401, 403, 422),
)
async def create_bot(body: BotIn, actor: CurrentActor, bots: Bots, response: Response) -> BotOut:
    """Create a draft bot owned by the caller (`status: "draft"`, `version: 1`)."""
    settings = BotSettings(**{**body.model_dump(), "engine": EngineKind(body.engine)})
    bot = await bots.create_bot(actor, settings)
    response.headers["Location"] = f"/api/v1/bots/{bot.id}"
    return _bot(response, bot)


@router.get("", response_model=PageOut[BotOut], responses=problem_responses(400, 401, 403, 422))
async def list_bots(
    actor: CurrentActor,
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
    return PageOut[BotOut](
        items=[BotOut.model_validate(b) for b in page.items], next_cursor=page.next_cursor
    )


@router.get("/{bot_id}", response_model=BotOut, responses=BOT_ERRORS)
async def read_bot(bot_id: UUID, actor: CurrentActor, bots: Bots, response: Response) -> BotOut:
    """One bot, for its owner and admins (anyone else: 404)."""
    return _bot(response, await bots.get_bot(actor, bot_id))


@router.patch(
    "/{bot_id}", response_model=BotOut, responses=problem_responses(401, 403, 404, 412, 422)
)
async def update_bot(
    bot_id: UUID,
    body: BotPatchIn,
    actor: CurrentActor,
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
    bot_id: UUID, actor: CurrentActor, bots: Bots, if_match: IfMatch = None
) -> Response:
    """Delete the bot with its knowledge, API keys, conversations and messages."""
    await bots.delete_bot(actor, bot_id, expected_version=expected_version(if_match))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{bot_id}/publish", response_model=BotOut, responses=problem_responses(401, 403, 404, 409)
)
async def publish_bot(bot_id: UUID, actor: CurrentActor, bots: Bots, response: Response) -> BotOut:
    """draft -> published: every signed-in user may chat with it. Archived bots answer 409."""
    return _bot(response, await bots.publish_bot(actor, bot_id))


@router.post("/{bot_id}/archive", response_model=BotOut, responses=BOT_ERRORS)
async def archive_bot(bot_id: UUID, actor: CurrentActor, bots: Bots, response: Response) -> BotOut:
    """-> archived: no new messages (409); existing conversations stay readable."""
    return _bot(response, await bots.archive_bot(actor, bot_id))


# --- knowledge --------------------------------------------------------------------------------


def _entry(response: Response, entry: object) -> KnowledgeOut:
    out = KnowledgeOut.model_validate(entry)
    set_etag(response, out.version)
    return out


@router.post(
    "/{bot_id}/knowledge",
    status_code=status.HTTP_201_CREATED,
    response_model=KnowledgeOut,
    responses=problem_responses(401, 403, 404, 422),
    tags=["knowledge"],
)
async def add_knowledge(
    bot_id: UUID, body: KnowledgeIn, actor: CurrentActor, bots: Bots, response: Response
) -> KnowledgeOut:
    """Add one entry: a question, its answer, and other ways people ask it (`examples`)."""
    entry = await bots.add_entry(actor, bot_id, body.draft())
    response.headers["Location"] = f"/api/v1/bots/{bot_id}/knowledge/{entry.id}"
    return _entry(response, entry)


@router.get(
    "/{bot_id}/knowledge",
    response_model=PageOut[KnowledgeOut],
    responses=problem_responses(400, 401, 403, 404),
    tags=["knowledge"],
)
async def list_knowledge(
    bot_id: UUID, actor: CurrentActor, bots: Bots, limit: Limit = 20, cursor: Cursor = None
) -> PageOut[KnowledgeOut]:
    """The bot's knowledge entries, oldest first."""
    page = await bots.list_entries(actor, bot_id, limit=limit, cursor=cursor)
    return PageOut[KnowledgeOut](
        items=[KnowledgeOut.model_validate(e) for e in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/{bot_id}/knowledge/bulk",
    status_code=status.HTTP_201_CREATED,
    response_model=BulkOut,
    responses=problem_responses(401, 403, 404, 413, 422),
    tags=["knowledge"],
)
async def import_knowledge(bot_id: UUID, body: BulkIn, actor: CurrentActor, bots: Bots) -> BulkOut:
    """Import up to 5,000 entries, all or nothing, in one transaction."""
    created = await bots.import_entries(actor, bot_id, [e.draft() for e in body.entries])
    return BulkOut(created=created)


@router.get(
    "/{bot_id}/knowledge/{entry_id}",
    response_model=KnowledgeOut,
    responses=BOT_ERRORS,
    tags=["knowledge"],
)
async def read_knowledge(
    bot_id: UUID, entry_id: UUID, actor: CurrentActor, bots: Bots, response: Response
) -> KnowledgeOut:
    """One knowledge entry, with its `ETag`."""
    return _entry(response, await bots.get_entry(actor, bot_id, entry_id))


@router.patch(
    "/{bot_id}/knowledge/{entry_id}",
    response_model=KnowledgeOut,
    responses=problem_responses(401, 403, 404, 412, 422),
    tags=["knowledge"],
)
async def update_knowledge(
    bot_id: UUID,
    entry_id: UUID,
    body: KnowledgePatchIn,
    actor: CurrentActor,
    bots: Bots,
    response: Response,
    if_match: IfMatch = None,
) -> KnowledgeOut:
    """Revise an entry. Send `If-Match` with the ETag you read: a stale one answers 412."""
    entry = await bots.update_entry(
        actor,
        bot_id,
        entry_id,
        body.model_dump(exclude_unset=True),
        expected_version=expected_version(if_match),
    )
    return _entry(response, entry)


@router.delete(
    "/{bot_id}/knowledge/{entry_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 412),
    tags=["knowledge"],
)
async def delete_knowledge(
    bot_id: UUID, entry_id: UUID, actor: CurrentActor, bots: Bots, if_match: IfMatch = None
) -> Response:
    """Delete an entry (If-Match honoured); the bot's knowledge revision moves on."""
    await bots.delete_entry(actor, bot_id, entry_id, expected_version=expected_version(if_match))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- API keys ---------------------------------------------------------------------------------


@router.post(
    "/{bot_id}/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreatedOut,
    responses=problem_responses(401, 403, 404, 422),
    tags=["api keys"],
)
async def create_api_key(
    bot_id: UUID, actor: CurrentActor, bots: Bots, body: ApiKeyIn | None = None
) -> ApiKeyCreatedOut:
    """A key that chats with this bot only (`Authorization: Bearer cbk_...`). The secret is
    in this answer and nowhere else: it is stored only as a hash."""
    issued = await bots.create_api_key(actor, bot_id, (body or ApiKeyIn()).name)
    return ApiKeyCreatedOut.model_validate(
        {**ApiKeyOut.model_validate(issued.key).model_dump(), "key": issued.secret}
    )


@router.get(
    "/{bot_id}/api-keys",
    response_model=list[ApiKeyOut],
    responses=BOT_ERRORS,
    tags=["api keys"],
)
async def list_api_keys(bot_id: UUID, actor: CurrentActor, bots: Bots) -> list[ApiKeyOut]:
    """The bot's keys by prefix, with `created_at`, `last_used_at` and `revoked_at`."""
    return [ApiKeyOut.model_validate(k) for k in await bots.list_api_keys(actor, bot_id)]


@router.delete(
    "/{bot_id}/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=BOT_ERRORS,
    tags=["api keys"],
)
async def revoke_api_key(bot_id: UUID, key_id: UUID, actor: CurrentActor, bots: Bots) -> Response:
    """Revoke a key: it stops working at once."""
    await bots.revoke_api_key(actor, bot_id, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

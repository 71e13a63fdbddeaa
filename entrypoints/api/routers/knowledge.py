"""`/api/v1/bots/{bot_id}/knowledge`: what a bot knows, entry by entry or in bulk."""

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Response, status
from pydantic import Field

from application.bots import MAX_BULK_ENTRIES
from domain.bots import (
    MAX_ANSWER_LENGTH,
    MAX_EXAMPLES,
    MAX_QUESTION_LENGTH,
    MAX_TAGS,
    KnowledgeDraft,
)
from entrypoints.api.dependencies import CurrentUser, Knowledge
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

router = APIRouter(prefix="/api/v1/bots", tags=["knowledge"])
ENTRY_ERRORS = problem_responses(401, 403, 404)


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
    ids: list[UUID] = Field(description="The new entries' ids, in the order they were sent.")


def _entry(response: Response, entry: object) -> KnowledgeOut:
    return with_etag(response, KnowledgeOut.model_validate(entry))


@router.post(
    "/{bot_id}/knowledge",
    status_code=status.HTTP_201_CREATED,
    response_model=KnowledgeOut,
    responses=problem_responses(401, 403, 404, 422),
)
async def add_knowledge(
    bot_id: UUID, body: KnowledgeIn, actor: CurrentUser, knowledge: Knowledge, response: Response
) -> KnowledgeOut:
    """Add one entry: a question, its answer, and other ways people ask it (`examples`)."""
    entry = await knowledge.add_entry(actor, bot_id, body.draft())
    response.headers["Location"] = f"/api/v1/bots/{bot_id}/knowledge/{entry.id}"
    return _entry(response, entry)


@router.get(
    "/{bot_id}/knowledge",
    response_model=PageOut[KnowledgeOut],
    responses=problem_responses(400, 401, 403, 404),
)
async def list_knowledge(
    bot_id: UUID, actor: CurrentUser, knowledge: Knowledge, limit: Limit = 20, cursor: Cursor = None
) -> PageOut[KnowledgeOut]:
    """The bot's knowledge entries, oldest first."""
    page = await knowledge.list_entries(actor, bot_id, limit=limit, cursor=cursor)
    return page_of(KnowledgeOut, page)


@router.post(
    "/{bot_id}/knowledge/bulk",
    status_code=status.HTTP_201_CREATED,
    response_model=BulkOut,
    responses=problem_responses(401, 403, 404, 413, 422),
)
async def import_knowledge(
    bot_id: UUID, body: BulkIn, actor: CurrentUser, knowledge: Knowledge
) -> BulkOut:
    """Import up to 5,000 entries, all or nothing, in one transaction."""
    ids = await knowledge.import_entries(actor, bot_id, [e.draft() for e in body.entries])
    return BulkOut(created=len(ids), ids=ids)


@router.get(
    "/{bot_id}/knowledge/{entry_id}",
    response_model=KnowledgeOut,
    responses=ENTRY_ERRORS,
)
async def read_knowledge(
    bot_id: UUID, entry_id: UUID, actor: CurrentUser, knowledge: Knowledge, response: Response
) -> KnowledgeOut:
    """One knowledge entry, with its `ETag`."""
    return _entry(response, await knowledge.get_entry(actor, bot_id, entry_id))


@router.patch(
    "/{bot_id}/knowledge/{entry_id}",
    response_model=KnowledgeOut,
    responses=problem_responses(401, 403, 404, 412, 422),
)
async def update_knowledge(
    bot_id: UUID,
    entry_id: UUID,
    body: KnowledgePatchIn,
    actor: CurrentUser,
    knowledge: Knowledge,
    response: Response,
    if_match: IfMatch = None,
) -> KnowledgeOut:
    """Revise an entry. Send `If-Match` with the ETag you read: a stale one answers 412."""
    entry = await knowledge.update_entry(
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
)
async def delete_knowledge(
    bot_id: UUID, entry_id: UUID, actor: CurrentUser, knowledge: Knowledge, if_match: IfMatch = None
) -> Response:
    """Delete an entry (If-Match honoured); the bot's knowledge revision moves on."""
    await knowledge.delete_entry(
        actor, bot_id, entry_id, expected_version=expected_version(if_match)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)

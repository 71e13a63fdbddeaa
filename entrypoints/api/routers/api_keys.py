"""`/api/v1/bots/{bot_id}/api-keys`: keys that let a website or a service chat with one bot."""

from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Response, status
from pydantic import Field

from entrypoints.api.dependencies import ApiKeys, CurrentUser
from entrypoints.api.errors import problem_responses
from entrypoints.api.schemas import Out, StrictIn

router = APIRouter(prefix="/api/v1/bots", tags=["api-keys"])
KEY_ERRORS = problem_responses(401, 403, 404)


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


@router.post(
    "/{bot_id}/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreatedOut,
    responses=problem_responses(401, 403, 404, 422),
)
async def create_api_key(
    bot_id: UUID, actor: CurrentUser, keys: ApiKeys, body: ApiKeyIn | None = None
) -> ApiKeyCreatedOut:
    """A key that chats with this bot only (`Authorization: Bearer cbk_...`). The secret is
    in this answer and nowhere else: it is stored only as a hash."""
    issued = await keys.create_api_key(actor, bot_id, (body or ApiKeyIn()).name)
    return ApiKeyCreatedOut.model_validate(
        {**ApiKeyOut.model_validate(issued.key).model_dump(), "key": issued.secret}
    )


@router.get(
    "/{bot_id}/api-keys",
    response_model=list[ApiKeyOut],
    responses=KEY_ERRORS,
)
async def list_api_keys(bot_id: UUID, actor: CurrentUser, keys: ApiKeys) -> list[ApiKeyOut]:
    """The bot's keys by prefix, with `created_at`, `last_used_at` and `revoked_at`."""
    return [ApiKeyOut.model_validate(k) for k in await keys.list_api_keys(actor, bot_id)]


@router.delete(
    "/{bot_id}/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=KEY_ERRORS,
)
async def revoke_api_key(bot_id: UUID, key_id: UUID, actor: CurrentUser, keys: ApiKeys) -> Response:
    """Revoke a key: it stops working at once."""
    await keys.revoke_api_key(actor, bot_id, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

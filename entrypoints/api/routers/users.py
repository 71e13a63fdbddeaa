"""`/api/v1/users`: the caller's own account, and admin user management."""

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Response, status
from pydantic import Field

from domain.users import Role
from entrypoints.api.dependencies import CurrentUser, Identity
from entrypoints.api.errors import problem_responses
from entrypoints.api.routers.auth import UserOut
from entrypoints.api.schemas import PageOut, StrictIn, page_of

router = APIRouter(prefix="/api/v1/users", tags=["users"])


class UpdateMeIn(StrictIn):
    display_name: str = Field(min_length=1, max_length=100)


class PasswordChangeIn(StrictIn):
    current_password: str = Field(min_length=1, max_length=128)
    new_password: str = Field(min_length=8, max_length=128)


class UserAdminIn(StrictIn):
    role: Literal["admin", "member"] | None = None
    is_active: bool | None = None


@router.get("/me", response_model=UserOut, responses=problem_responses(401))
async def read_me(actor: CurrentUser, identity: Identity) -> UserOut:
    """The signed-in caller."""
    return UserOut.model_validate(await identity.me(actor))


@router.patch("/me", response_model=UserOut, responses=problem_responses(401, 422))
async def update_me(body: UpdateMeIn, actor: CurrentUser, identity: Identity) -> UserOut:
    """Change the caller's display name."""
    return UserOut.model_validate(await identity.update_me(actor, body.display_name))


@router.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 422),
)
async def change_password(
    body: PasswordChangeIn, actor: CurrentUser, identity: Identity
) -> Response:
    """Change the password; every refresh token of the caller is revoked."""
    await identity.change_password(actor, body.current_password, body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("", response_model=PageOut[UserOut], responses=problem_responses(400, 401, 403))
async def list_users(
    actor: CurrentUser,
    identity: Identity,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: str | None = None,
) -> PageOut[UserOut]:
    """Admins only: every account, oldest first."""
    page = await identity.list_users(actor, limit=limit, cursor=cursor)
    return page_of(UserOut, page)


@router.patch(
    "/{user_id}", response_model=UserOut, responses=problem_responses(401, 403, 404, 409, 422)
)
async def update_user(
    user_id: UUID, body: UserAdminIn, actor: CurrentUser, identity: Identity
) -> UserOut:
    """Admins only: change a role or (de)activate; a deactivated user is signed out at once."""
    user = await identity.update_user(
        actor,
        user_id,
        role=Role(body.role) if body.role is not None else None,
        is_active=body.is_active,
    )
    return UserOut.model_validate(user)

"""`/api/v1/auth`: registration, OAuth2 password sign-in, token rotation, sign-out."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import Field

from application.identity import TokenPair
from entrypoints.api.dependencies import Identity, client_address
from entrypoints.api.errors import problem_responses
from entrypoints.api.schemas import Out, StrictIn

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class RegisterIn(StrictIn):
    email: str = Field(max_length=254, examples=["ada@example.com"])
    password: str = Field(min_length=8, max_length=128)
    display_name: str = Field(min_length=1, max_length=100, examples=["Ada"])


class UserOut(Out):
    id: UUID
    email: str
    display_name: str
    role: Literal["admin", "member"]
    is_active: bool
    created_at: datetime
    updated_at: datetime


class TokenOut(Out):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str


class RefreshIn(StrictIn):
    refresh_token: str = Field(min_length=1, max_length=512)


def _tokens(pair: TokenPair) -> TokenOut:
    return TokenOut(
        access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token
    )


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=problem_responses(409, 422, 429),
)
async def register(
    body: RegisterIn, address: Annotated[str, Depends(client_address)], identity: Identity
) -> UserOut:
    """Create an account. The email is normalised (case, spaces); a taken email is a 409. Too
    many registrations from one address, or too many at once, answer 429 with Retry-After."""
    user = await identity.register(
        body.email, body.password, body.display_name, client_address=address
    )
    return UserOut.model_validate(user)


@router.post("/token", response_model=TokenOut, responses=problem_responses(401, 422, 429))
async def token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    address: Annotated[str, Depends(client_address)],
    identity: Identity,
) -> TokenOut:
    """OAuth2 password grant (`username` is the email). Wrong credentials answer 401, the same
    for an unknown email and a wrong password; repeated failures answer 429 with Retry-After."""
    return _tokens(await identity.login(form.username, form.password, address))


@router.post("/refresh", response_model=TokenOut, responses=problem_responses(401, 422))
async def refresh(body: RefreshIn, identity: Identity) -> TokenOut:
    """Rotate: a refresh token works once. Presenting a used one revokes its whole family."""
    return _tokens(await identity.refresh(body.refresh_token))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(422))
async def logout(body: RefreshIn, identity: Identity) -> Response:
    """Revoke the refresh token's family; it can no longer refresh."""
    await identity.logout(body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)

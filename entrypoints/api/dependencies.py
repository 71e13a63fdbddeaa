"""Who is calling: bearer credentials turned into an `Actor` by the use cases.

A bearer value is either a user's JWT access token or a bot API key (`cbk_...`); the key's
prefix tells them apart without trying both.
"""

from typing import Annotated

from dependency_injector.wiring import Provide, inject
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from application.actors import Actor, UserActor
from application.bots import BotService, is_api_key
from application.errors import AuthenticationFailed, Forbidden
from application.identity import IdentityService
from entrypoints.bootstrap import Container

# auto_error=False: a missing token is answered by our error table (401 problem+json).
bearer = OAuth2PasswordBearer(
    tokenUrl="/api/v1/auth/token",
    auto_error=False,
    description="A user's access token (JWT) or, on chat routes, a bot API key (`cbk_...`).",
)


@inject
async def current_actor(
    token: Annotated[str | None, Depends(bearer)],
    identity: Annotated[IdentityService, Depends(Provide[Container.identity])],
    bots: Annotated[BotService, Depends(Provide[Container.bots])],
) -> Actor:
    if not token:
        raise AuthenticationFailed("Missing bearer token.")
    if is_api_key(token):
        return await bots.authenticate_api_key(token)
    return await identity.authenticate(token)


async def current_user(actor: Annotated[Actor, Depends(current_actor)]) -> UserActor:
    """Routes for people only: a valid bot API key is known but not allowed here (403)."""
    if not isinstance(actor, UserActor):
        raise Forbidden("Bot API keys may only use the chat routes of their bot.")
    return actor


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


CurrentActor = Annotated[Actor, Depends(current_actor)]
CurrentUser = Annotated[UserActor, Depends(current_user)]

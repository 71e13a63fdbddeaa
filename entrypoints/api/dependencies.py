"""Who is calling: bearer credentials turned into an `Actor` by the identity use cases."""

from typing import Annotated

from dependency_injector.wiring import Provide, inject
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from application.actors import UserActor
from application.errors import AuthenticationFailed
from application.identity import IdentityService
from entrypoints.bootstrap import Container

# auto_error=False: a missing token is answered by our error table (401 problem+json).
bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


@inject
async def current_user(
    token: Annotated[str | None, Depends(bearer)],
    identity: Annotated[IdentityService, Depends(Provide[Container.identity])],
) -> UserActor:
    if not token:
        raise AuthenticationFailed("Missing bearer token.")
    return await identity.authenticate(token)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


CurrentUser = Annotated[UserActor, Depends(current_user)]

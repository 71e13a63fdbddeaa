"""What routes depend on: the caller (`Actor`) and the use-case services.

Services come from the dependency-injector container of the app serving the request
(`request.app.state.container`), through small async functions. Two reasons, both measured:
FastAPI runs a sync dependency such as dependency-injector's `Provide[...]` marker in a worker
thread on every request (about a fifth of a simple GET's CPU time here), and module wiring binds
routes to whichever container was wired last, so two apps in one process would share one.

A bearer value is either a user's JWT access token or a bot API key (`cbk_...`); the key's prefix
tells them apart without trying both.
"""

from typing import Annotated, cast

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from application.actors import Actor, UserActor
from application.bots import BotApiKeys, BotKnowledge, BotLifecycle, is_api_key
from application.conversations import ConversationUseCases
from application.errors import AuthenticationFailed, Forbidden
from application.identity import IdentityService
from application.ports import SchemaInspector
from entrypoints.api.forwarded import resolve_client_address
from entrypoints.bootstrap import Container

# auto_error=False: a missing token is answered by our error table (401 problem+json).
bearer = OAuth2PasswordBearer(
    tokenUrl="/api/v1/auth/token",
    auto_error=False,
    description="Sign in with your **email** as the username and your password; the access "
    "token (JWT) is then sent as `Authorization: Bearer ...`.",
)


def _container(request: Request) -> Container:
    return cast(Container, request.app.state.container)


async def identity_service(request: Request) -> IdentityService:
    service: IdentityService = _container(request).identity()
    return service


async def bot_service(request: Request) -> BotLifecycle:
    service: BotLifecycle = _container(request).bots()
    return service


async def knowledge_service(request: Request) -> BotKnowledge:
    service: BotKnowledge = _container(request).knowledge()
    return service


async def api_key_service(request: Request) -> BotApiKeys:
    service: BotApiKeys = _container(request).api_keys()
    return service


async def conversation_service(request: Request) -> ConversationUseCases:
    service: ConversationUseCases = _container(request).conversations()
    return service


async def schema_inspector(request: Request) -> SchemaInspector:
    return cast(SchemaInspector, _container(request).schema_inspector())


Identity = Annotated[IdentityService, Depends(identity_service)]
Bots = Annotated[BotLifecycle, Depends(bot_service)]
Knowledge = Annotated[BotKnowledge, Depends(knowledge_service)]
ApiKeys = Annotated[BotApiKeys, Depends(api_key_service)]
Conversations = Annotated[ConversationUseCases, Depends(conversation_service)]
Inspector = Annotated[SchemaInspector, Depends(schema_inspector)]


async def current_actor(request: Request, token: Annotated[str | None, Depends(bearer)]) -> Actor:
    # The services are looked up here, not declared as sub-dependencies: every route runs
    # this, and each sub-dependency FastAPI resolves costs a few percent of a simple GET.
    if not token:
        scheme = request.headers.get("authorization", "").partition(" ")[0]
        if scheme:
            raise AuthenticationFailed(
                f"The Authorization scheme must be Bearer, not {scheme[:20]!r}."
            )
        raise AuthenticationFailed("Missing bearer token.")
    if is_api_key(token):
        return await (await api_key_service(request)).authenticate_api_key(token)
    return await (await identity_service(request)).authenticate(token)


async def current_user(actor: Annotated[Actor, Depends(current_actor)]) -> UserActor:
    """Routes for people only: a valid bot API key is known but not allowed here (403)."""
    if not isinstance(actor, UserActor):
        raise Forbidden("Bot API keys may only use the chat routes of their bot.")
    return actor


async def client_address(request: Request) -> str:
    """The address sign-in and registration limits count by. X-Forwarded-For counts only from
    CHATBOTS_TRUSTED_PROXIES (uvicorn's own proxy-header handling is off: `chatbots serve`)."""
    return resolve_client_address(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        _container(request).settings().trusted_proxies,
    )


CurrentActor = Annotated[Actor, Depends(current_actor)]
CurrentUser = Annotated[UserActor, Depends(current_user)]

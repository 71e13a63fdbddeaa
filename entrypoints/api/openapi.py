"""The OpenAPI document as clients see the answers: errors as problem+json, two credentials.

FastAPI documents every error response as `application/json` with its own `HTTPValidationError`
for 422; the service answers `application/problem+json` with `Problem` (OpenAI's envelope under
`/v1`). Rewriting the generated document once, here, keeps every route's declaration short.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from entrypoints.api.dependencies import current_user
from entrypoints.api.problems import OPENAI_PATH_PREFIX, PROBLEM_JSON

BOT_KEY_SCHEME: Final = "BotApiKey"
_PROBLEM_REF: Final = {"$ref": "#/components/schemas/Problem"}
_OPENAI_ERROR_REF: Final = {"$ref": "#/components/schemas/OpenAIError"}
_OPENAI_ERROR_SCHEMA: Final = {
    "title": "OpenAIError",
    "description": "OpenAI's error envelope, which its SDKs parse into typed exceptions.",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "code": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
        }
    },
}


def _uses(route: APIRoute, dependency: object) -> bool:
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        if dependant.call is dependency:
            return True
        pending.extend(dependant.dependencies)
    return False


def _rewrite_errors(path: str, operation: dict[str, Any]) -> None:
    for status, response in operation.get("responses", {}).items():
        if status.isdigit() and int(status) >= 400:
            if path.startswith(OPENAI_PATH_PREFIX):
                response["content"] = {"application/json": {"schema": _OPENAI_ERROR_REF}}
            else:
                response["content"] = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}


def build_openapi(app: FastAPI, routers: Sequence[APIRouter]) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["OpenAIError"] = _OPENAI_ERROR_SCHEMA
    components.setdefault("securitySchemes", {})[BOT_KEY_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "description": "A bot API key (`cbk_...`), made under the bot's api-keys: it may chat "
        "with that one bot (open conversations, post and read messages, `/v1`) and nothing else.",
    }
    # A route that takes any caller (not only people) takes a bot key too.
    bot_key_routes = {
        (route.path, method.lower())
        for router in routers
        for route in router.routes
        if isinstance(route, APIRoute) and not _uses(route, current_user)
        for method in route.methods or ()
    }
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            _rewrite_errors(path, operation)
            security = operation.get("security")
            if security and (path, method) in bot_key_routes:
                operation["security"] = [*security, {BOT_KEY_SCHEME: []}]
    return document


def install_openapi(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    cached: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not cached:
            cached.update(build_openapi(app, routers))
        return cached

    app.openapi = openapi  # type: ignore[method-assign]

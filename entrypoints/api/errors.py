"""The error table: every application and domain error mapped to a problem (problems.py),
and the handlers that answer with it, in the rendering the caller's surface speaks."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, params
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from application import errors as app_errors
from application.pagination import InvalidCursor
from domain import errors as domain_errors
from entrypoints.api.hardening import media_type as sent_media_type
from entrypoints.api.problem_schema import Problem as ProblemDocument
from entrypoints.api.problems import PROBLEM_JSON, Problem

logger = logging.getLogger("chatbots.api")


@dataclass(frozen=True)
class ProblemKind:
    status: int
    slug: str
    title: str


# Ordered from specific to general: the first class in an error's MRO that is listed here wins.
ERROR_TABLE: dict[type[Exception], ProblemKind] = {
    app_errors.NotFound: ProblemKind(404, "not-found", "Not found"),
    app_errors.AuthenticationFailed: ProblemKind(401, "unauthenticated", "Authentication failed"),
    app_errors.Forbidden: ProblemKind(403, "forbidden", "Forbidden"),
    app_errors.Conflict: ProblemKind(409, "conflict", "Conflict"),
    app_errors.DuplicateKey: ProblemKind(409, "conflict", "Conflict"),
    app_errors.ConcurrentUpdate: ProblemKind(409, "conflict", "Conflict"),
    app_errors.IntegrityViolation: ProblemKind(409, "integrity-violation", "Conflict"),
    app_errors.StoreBusy: ProblemKind(503, "store-busy", "Service busy"),
    app_errors.StoreNotReady: ProblemKind(503, "store-not-ready", "Service not ready"),
    app_errors.PreconditionFailed: ProblemKind(412, "precondition-failed", "Precondition failed"),
    app_errors.Throttled: ProblemKind(429, "throttled", "Too many requests"),
    app_errors.UpstreamTimeout: ProblemKind(504, "upstream-timeout", "Upstream model timed out"),
    app_errors.UpstreamFailed: ProblemKind(502, "upstream-failed", "Upstream model failed"),
    InvalidCursor: ProblemKind(400, "invalid-cursor", "Invalid cursor"),
    domain_errors.InvalidValue: ProblemKind(422, "validation-error", "Validation error"),
    domain_errors.InvalidTransition: ProblemKind(409, "invalid-transition", "Invalid transition"),
    domain_errors.ConversationClosed: ProblemKind(
        409, "conversation-closed", "Conversation closed"
    ),
    domain_errors.BotNotAcceptingMessages: ProblemKind(409, "bot-archived", "Bot archived"),
}


def kind_of(error: Exception) -> ProblemKind | None:
    for cls in type(error).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    return None


def problem_for(error: Exception) -> Problem:
    kind = kind_of(error)
    if kind is None:  # pragma: no cover - every raised class is in the table
        return Problem(500)
    headers: dict[str, str] = {}
    if kind.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, app_errors.Throttled | app_errors.StoreBusy):
        headers["Retry-After"] = str(error.retry_after_seconds)
    detail = getattr(error, "detail", "") or str(error)
    errors = None
    if isinstance(error, domain_errors.InvalidValue):
        errors = [{"loc": ["body", error.field], "msg": error.message}]
    return Problem(
        kind.status, detail, slug=kind.slug, title=kind.title, errors=errors, headers=headers
    )


_JSON_MEDIA_TYPES = ("application/json",)
_FORM_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_WRONG_BODY_TYPES = {"model_attributes_type", "dict_type", "missing"}


def _media_type_mismatch(request: Request, issues: Sequence[Any]) -> Problem | None:
    """415 when the body failed to validate because it came in the wrong media type."""
    route = request.scope.get("route")
    body_field = getattr(route, "body_field", None)
    if body_field is None or request.method not in ("POST", "PUT", "PATCH"):
        return None
    media_type = sent_media_type(request.scope)
    wants_form = isinstance(body_field.field_info, params.Form)
    accepted = _FORM_MEDIA_TYPES if wants_form else _JSON_MEDIA_TYPES
    if media_type in accepted or not any(
        issue.get("type") in _WRONG_BODY_TYPES and tuple(issue.get("loc", ()))[:1] == ("body",)
        for issue in issues
    ):
        return None
    if wants_form:
        detail = (
            "This route takes form fields (application/x-www-form-urlencoded), "
            f"not {media_type or 'a body without a content type'}."
        )
    else:
        detail = (
            "This route takes a JSON body: send Content-Type: application/json, "
            f"not {media_type or 'no content type'}."
        )
    return Problem(415, detail, slug="unsupported-media-type")


def _validation_problem(request: Request, error: RequestValidationError) -> Problem:
    issues = error.errors()
    if any(issue.get("type") == "json_invalid" for issue in issues):
        return Problem(400, "The request body is not valid JSON.", slug="malformed-body")
    if (mismatch := _media_type_mismatch(request, issues)) is not None:
        return mismatch
    errors = [
        {"loc": list(issue.get("loc", ())), "msg": str(issue.get("msg", ""))} for issue in issues
    ]
    return Problem(
        422,
        "The request does not match the schema.",
        slug="validation-error",
        title="Validation error",
        errors=jsonable_encoder(errors),
    )


async def _on_known_error(request: Request, error: Exception) -> JSONResponse:
    return problem_for(error).response_for(request.url.path)


async def _on_validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return _validation_problem(request, error).response_for(request.url.path)


# What the framework itself answers (no route, wrong method, unparsable or oversized body), in
# the same words and `type` URIs as our own errors.
_FRAMEWORK_PROBLEMS = {
    400: ("malformed-body", "The request body could not be parsed: it must be valid UTF-8 JSON."),
    404: ("route-not-found", "No route matches {method} {path}."),
    405: ("method-not-allowed", "{method} is not allowed on {path}."),
    413: ("body-too-large", ""),
}


async def _on_http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    status = error.status_code
    headers = dict(error.headers or {})
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    detail = error.detail if isinstance(error.detail, str) else HTTPStatus(status).phrase
    slug, template = _FRAMEWORK_PROBLEMS.get(status, (None, ""))
    if template:
        detail = template.format(method=request.method, path=request.url.path)
        if status == 405 and "allow" in {k.lower() for k in headers}:
            allowed = next(v for k, v in headers.items() if k.lower() == "allow")
            detail = detail.rstrip(".") + f"; allowed: {allowed}."
    # OpenAI's own code for an unknown path: `model_not_found` is for an unknown bot.
    code = "unknown_url" if status == 404 else None
    problem = Problem(status, detail, slug=slug, headers=headers, openai_code=code)
    return problem.response_for(request.url.path)


async def _on_unexpected_error(request: Request, error: Exception) -> JSONResponse:
    # The stack trace goes to the log (without what a database error quotes: log_safety.py),
    # never to the caller.
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    problem = Problem(500, "An unexpected error occurred.", slug="internal-error")
    return problem.response_for(request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    for error_class in ERROR_TABLE:
        app.add_exception_handler(error_class, _on_known_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected_error)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries so every route documents its problem answers."""
    return {
        status: {
            "model": ProblemDocument,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {}},
        }
        for status in statuses
    }

"""The error table: every application and domain error mapped to an RFC 9457 problem."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, params
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from application import errors as app_errors
from application.pagination import InvalidCursor
from domain import errors as domain_errors

logger = logging.getLogger("chatbots.api")
PROBLEM_JSON = "application/problem+json"


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
    app_errors.ConcurrentUpdate: ProblemKind(412, "precondition-failed", "Precondition failed"),
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


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str


class Problem(BaseModel):
    """RFC 9457 problem details, the body of every error answer."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ValidationIssue] | None = None


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": f"/problems/{slug}" if slug else "about:blank",
        "title": title or phrase,
        "status": status,
        "detail": _sentence(detail or phrase),
    }
    if errors is not None:
        body["errors"] = errors
    return ProblemJSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _sentence(text: str) -> str:
    """Details read as sentences, whichever layer wrote them."""
    text = text.strip()
    if text and not text.endswith((".", "!", "?")):
        text += "."
    return text[:1].upper() + text[1:]


class ProblemJSONResponse(JSONResponse):
    """ASCII-escaped JSON: an error may echo what the caller sent, and an echoed lone surrogate
    must still render (as `\\udxxx`) instead of failing the answer with a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("ascii")


OPENAI_PATH_PREFIX = "/v1/"
_OPENAI_TYPES = {
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "model_not_found"),
    409: ("invalid_request_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    502: ("upstream_error", "upstream_failed"),
    504: ("upstream_error", "upstream_timeout"),
}


def openai_error_body(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope, which its SDKs parse into typed exceptions."""
    error_type, code = _OPENAI_TYPES.get(
        status, ("invalid_request_error" if status < 500 else "api_error", None)
    )
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def openai_response(problem: JSONResponse, code: str | None = None) -> JSONResponse:
    """The same answer (status, headers) in OpenAI's envelope, for the `/v1` surface."""
    body = json.loads(bytes(problem.body))
    issues = body.get("errors") or []
    param = ".".join(str(p) for p in issues[0]["loc"][1:]) if issues else None
    message = body["detail"]
    if issues:
        message = "; ".join(f"{'.'.join(map(str, i['loc']))}: {i['msg']}" for i in issues)
    headers = {k: v for k, v in problem.headers.items() if k.lower() in _KEPT_HEADERS}
    envelope = openai_error_body(problem.status_code, message, param or None)
    if code is not None:
        envelope["error"]["code"] = code
    return ProblemJSONResponse(envelope, status_code=problem.status_code, headers=headers)


_KEPT_HEADERS = {"www-authenticate", "retry-after", "allow"}


def _for(request: Request, problem: JSONResponse) -> JSONResponse:
    return openai_response(problem) if request.url.path.startswith(OPENAI_PATH_PREFIX) else problem


def kind_of(error: Exception) -> ProblemKind | None:
    for cls in type(error).__mro__:
        if cls in ERROR_TABLE:
            return ERROR_TABLE[cls]
    return None


def problem_for(error: Exception) -> JSONResponse:
    kind = kind_of(error)
    if kind is None:  # pragma: no cover - every raised class is in the table
        return problem_response(500, "")
    headers: dict[str, str] = {}
    if kind.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, app_errors.Throttled):
        headers["Retry-After"] = str(error.retry_after_seconds)
    detail = getattr(error, "detail", "") or str(error)
    errors = None
    if isinstance(error, domain_errors.InvalidValue):
        errors = [{"loc": ["body", error.field], "msg": error.message}]
    return problem_response(
        kind.status, detail, slug=kind.slug, title=kind.title, errors=errors, headers=headers
    )


def problem_body(error: Exception) -> dict[str, Any]:
    """The problem object for `error`, for answers already under way (an SSE `error` event)."""
    body: dict[str, Any] = json.loads(bytes(problem_for(error).body))
    return body


def openai_error_for(error: Exception) -> dict[str, Any]:
    """The same, in OpenAI's envelope (an error chunk of a `/v1` stream)."""
    body: dict[str, Any] = json.loads(bytes(openai_response(problem_for(error)).body))
    return body


_JSON_MEDIA_TYPES = ("application/json",)
_FORM_MEDIA_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_WRONG_BODY_TYPES = {"model_attributes_type", "dict_type", "missing"}


def _media_type_mismatch(request: Request, issues: Sequence[Any]) -> JSONResponse | None:
    """415 when the body failed to validate because it came in the wrong media type."""
    route = request.scope.get("route")
    body_field = getattr(route, "body_field", None)
    if body_field is None or request.method not in ("POST", "PUT", "PATCH"):
        return None
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
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
    return problem_response(415, detail, slug="unsupported-media-type")


def _validation_problem(request: Request, error: RequestValidationError) -> JSONResponse:
    issues = error.errors()
    if any(issue.get("type") == "json_invalid" for issue in issues):
        return problem_response(400, "The request body is not valid JSON.", slug="malformed-body")
    if (mismatch := _media_type_mismatch(request, issues)) is not None:
        return mismatch
    errors = [
        {"loc": list(issue.get("loc", ())), "msg": str(issue.get("msg", ""))} for issue in issues
    ]
    return problem_response(
        422,
        "The request does not match the schema.",
        slug="validation-error",
        title="Validation error",
        errors=jsonable_encoder(errors),
    )


async def _on_known_error(request: Request, error: Exception) -> JSONResponse:
    return _for(request, problem_for(error))


async def _on_validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return _for(request, _validation_problem(request, error))


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
    problem = problem_response(status, detail, slug=slug, headers=headers)
    if request.url.path.startswith(OPENAI_PATH_PREFIX):
        # OpenAI's own answer to an unknown path; `model_not_found` is for an unknown bot.
        return openai_response(problem, code="unknown_url" if status == 404 else None)
    return problem


async def _on_unexpected_error(request: Request, error: Exception) -> JSONResponse:
    # The stack trace goes to the log (without what a database error quotes: log_safety.py),
    # never to the caller.
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return _for(
        request, problem_response(500, "An unexpected error occurred.", slug="internal-error")
    )


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
            "model": Problem,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {}},
        }
        for status in statuses
    }

"""One problem value, two bodies: problem+json (RFC 9457) and OpenAI's error envelope (the `/v1`
surface, which OpenAI's SDKs parse into typed exceptions). An answer already streaming can no
longer change its status: exchange.py sends either body as an SSE event instead."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final

from fastapi.responses import JSONResponse

PROBLEM_JSON: Final = "application/problem+json"
OPENAI_PATH_PREFIX: Final = "/v1/"
_OPENAI_TYPES: Final = {
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "model_not_found"),
    409: ("invalid_request_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    502: ("upstream_error", "upstream_failed"),
    503: ("api_error", "service_unavailable"),
    504: ("upstream_error", "upstream_timeout"),
}
# Headers that still mean something in OpenAI's envelope.
_OPENAI_HEADERS: Final = {"www-authenticate", "retry-after", "allow"}


def _sentence(text: str) -> str:
    """Details read as sentences, whichever layer wrote them."""
    text = text.strip()
    if text and not text.endswith((".", "!", "?")):
        text += "."
    return text[:1].upper() + text[1:]


class _AsciiJSONResponse(JSONResponse):
    """ASCII-escaped JSON: an error may echo what the caller sent, and an echoed lone surrogate
    must still render (as `\\udxxx`) instead of failing the answer with a 500."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True)
class Problem:
    status: int
    detail: str = ""
    slug: str | None = None
    title: str | None = None
    errors: list[dict[str, Any]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # OpenAI's `code` when it is not the one its status implies (e.g. "unknown_url").
    openai_code: str | None = None

    def body(self) -> dict[str, Any]:
        phrase = HTTPStatus(self.status).phrase
        body: dict[str, Any] = {
            "type": f"/problems/{self.slug}" if self.slug else "about:blank",
            "title": self.title or phrase,
            "status": self.status,
            "detail": _sentence(self.detail or phrase),
        }
        if self.errors is not None:
            body["errors"] = self.errors
        return body

    def openai_body(self) -> dict[str, Any]:
        error_type, code = _OPENAI_TYPES.get(
            self.status, ("invalid_request_error" if self.status < 500 else "api_error", None)
        )
        message, param = _sentence(self.detail or HTTPStatus(self.status).phrase), None
        if self.errors:
            message = "; ".join(
                f"{'.'.join(map(str, issue['loc']))}: {issue['msg']}" for issue in self.errors
            )
            param = ".".join(str(part) for part in self.errors[0]["loc"][1:]) or None
        return {
            "error": {
                "message": message,
                "type": error_type,
                "param": param,
                "code": self.openai_code or code,
            }
        }

    def response(self) -> JSONResponse:
        return _AsciiJSONResponse(
            self.body(), status_code=self.status, media_type=PROBLEM_JSON, headers=self.headers
        )

    def openai_response(self) -> JSONResponse:
        headers = {k: v for k, v in self.headers.items() if k.lower() in _OPENAI_HEADERS}
        return _AsciiJSONResponse(self.openai_body(), status_code=self.status, headers=headers)

    def response_for(self, path: str) -> JSONResponse:
        """The rendering the caller of `path` understands."""
        return self.openai_response() if path.startswith(OPENAI_PATH_PREFIX) else self.response()

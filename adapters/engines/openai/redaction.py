"""Making text an upstream sent safe to log: no key, no key-like token, bounded length.

Upstreams like to echo keys ("Incorrect API key provided: sk-...") in their error bodies. What
they say goes to the operator's log only, never into a detail a member sees: an error page is
also what an internal service would answer if a URL ever reached one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

MAX_DETAIL_FRAGMENT_CHARS: Final = 200
REDACTED: Final = "[redacted]"

# Things that look like credentials: API-key prefixes (also the masked "sk-abc***xyz" form),
# bearer tokens, and long unbroken tokens.
_CREDENTIAL_LIKE = re.compile(
    r"Bearer\s+\S+|\b(?:sk|pk|rk|key)-[A-Za-z0-9_.*\-]{3,}|[A-Za-z0-9_.*+/=\-]{32,}",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Redactor:
    secret: str | None

    def __call__(self, text: str, limit: int = MAX_DETAIL_FRAGMENT_CHARS) -> str:
        if self.secret:
            text = text.replace(self.secret, REDACTED)
        text = _CREDENTIAL_LIKE.sub(REDACTED, text)
        text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
        if len(text) > limit:
            text = text[: limit - 1].rstrip() + "…"
        return text


def describe_error_object(error: object, redact: Redactor) -> str:
    """`type: message` from an OpenAI-style error object (or FastAPI/plain variants), redacted."""
    kind: object = None
    message: object = None
    if isinstance(error, Mapping):
        kind = error.get("type") or error.get("code")
        message = error.get("message") or error.get("detail")
    elif isinstance(error, str):
        message = error
    parts = []
    if isinstance(kind, str | int) and str(kind).strip():
        parts.append(redact(str(kind), 60))
    if isinstance(message, str) and message.strip():
        parts.append(redact(message))
    return ": ".join(parts)


def describe_error_body(body: bytes, content_type: str, redact: Redactor) -> str:
    """What an upstream said about a refused request, without ever echoing a whole body."""
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return ""
    try:
        data = json.loads(text)
    except ValueError:
        # A plain-text reason helps; an HTML error page from a proxy does not.
        if "html" in content_type or text.startswith("<"):
            return ""
        return redact(text)
    if isinstance(data, Mapping):
        if "error" in data:
            return describe_error_object(data["error"], redact)
        return describe_error_object(data, redact)
    return ""

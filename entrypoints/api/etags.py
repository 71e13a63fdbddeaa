"""ETag / If-Match for versioned resources: the ETag is the resource's integer `version`."""

from __future__ import annotations

import re
from typing import Protocol, TypeVar

from fastapi import Response

from application.errors import PreconditionFailed

_TAG = re.compile(r'^(?:W/)?"(\d+)"$')


def etag(version: int) -> str:
    return f'"{version}"'


class _Versioned(Protocol):
    @property
    def version(self) -> int: ...


V = TypeVar("V", bound=_Versioned)


def with_etag(response: Response, out: V) -> V:
    """`out`, with its version's `ETag` set on `response`."""
    response.headers["ETag"] = etag(out.version)
    return out


def expected_version(if_match: str | None) -> int | None:
    """None when there is no precondition (`*` or no header); a tag we never issued is stale."""
    if if_match is None or if_match.strip() == "*":
        return None
    candidates = [part.strip() for part in if_match.split(",")]
    for candidate in candidates:
        match = _TAG.match(candidate)
        if match:
            return int(match.group(1))
    raise PreconditionFailed("If-Match does not name a version of this resource.")

"""Opaque keyset cursors: clients get a token, repositories get the sort key it stands for."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar
from uuid import UUID

from application.errors import ApplicationError

T = TypeVar("T")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class InvalidCursor(ApplicationError):
    """A cursor that this service did not hand out."""


@dataclass(frozen=True)
class Keyset:
    """The position after which the next page starts: a sort value plus the id as tie-breaker."""

    value: datetime | int
    id: UUID


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(keyset: Keyset) -> str:
    value = keyset.value.isoformat() if isinstance(keyset.value, datetime) else keyset.value
    raw = json.dumps([value, str(keyset.id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Keyset | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, id_ = json.loads(raw)
        sort_value = value if isinstance(value, int) else datetime.fromisoformat(value)
        return Keyset(sort_value, UUID(id_))
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError) as exc:
        raise InvalidCursor("the cursor is not one this service handed out") from exc


def clamp_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    return max(1, min(MAX_LIMIT, limit))


def paginate(rows: list[T], limit: int, keyset_of: Callable[[T], Keyset]) -> Page[T]:
    """Repositories return up to `limit + 1` rows; the extra one only proves a next page exists."""
    if len(rows) > limit:
        items = rows[:limit]
        return Page(items, encode_cursor(keyset_of(items[-1])))
    return Page(rows, None)

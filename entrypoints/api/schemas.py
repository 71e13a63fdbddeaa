"""Request and response schemas shared across routers. Domain objects never go out as-is."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from fastapi import Header, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from application.pagination import Page

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class StrictIn(BaseModel):
    """Request bodies refuse unknown fields: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PageOut(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        None, description="Pass as `?cursor=` for the next page; null on the last page."
    )


def page_of(model: type[M], page: Page[Any]) -> PageOut[M]:
    """A use case's page as `PageOut[model]`, each item read by `model`."""
    out: type[PageOut[M]] = PageOut[model]  # type: ignore[valid-type]
    return out(
        items=[model.model_validate(item) for item in page.items], next_cursor=page.next_cursor
    )


class NoNulls(StrictIn):
    """PATCH bodies: omit a field to keep it; `null` is not a value any of them can take."""

    @model_validator(mode="before")
    @classmethod
    def _refuse_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = [name for name, value in data.items() if value is None]
            if nulls:
                raise ValueError(f"{', '.join(nulls)}: null is not allowed; omit the field")
        return data


IfMatch = Annotated[
    str | None,
    Header(description='The `ETag` last read, e.g. `"3"`; a stale one answers 412.'),
]
Limit = Annotated[int, Query(ge=1, le=100, description="Page size.")]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page.")]

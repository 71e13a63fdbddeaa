"""The documented shape of a problem answer (RFC 9457): `Problem` in the OpenAPI document.

Kept apart from problems.py's `Problem` value so that the schema's component keeps that name.
"""

from __future__ import annotations

from pydantic import BaseModel


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

"""Users, their roles and the refresh-token families that keep them signed in."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

from domain.errors import InvalidValue

# Deliberately permissive: the full RFC 5322 grammar is for the edge validator; the domain only
# guarantees one "@" with a dotted domain and no whitespace, which is what uniqueness relies on.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_EMAIL_LENGTH = 254
MAX_DISPLAY_NAME_LENGTH = 100
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


def normalize_email(raw: str) -> str:
    """Emails compare case-insensitively, without surrounding spaces and in NFKC form (full-width
    letters are the same letters), so they are stored so."""
    email = unicodedata.normalize("NFKC", raw).strip().lower()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        raise InvalidValue("email", "is not a valid email address")
    return email


def check_password_policy(password: str) -> None:
    if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise InvalidValue(
            "password",
            f"must be {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters long",
        )


def _clean_display_name(raw: str) -> str:
    name = raw.strip()
    if not 1 <= len(name) <= MAX_DISPLAY_NAME_LENGTH:
        raise InvalidValue(
            "display_name", f"must be 1 to {MAX_DISPLAY_NAME_LENGTH} characters long"
        )
    return name


@dataclass(eq=False)
class User:
    id: UUID
    email: str
    display_name: str
    password_hash: str
    role: Role
    is_active: bool
    created_at: datetime
    updated_at: datetime
    # Access tokens carry the generation they were issued in: bumping it ends every session at
    # once (a password change, a deactivation), not when the last token expires.
    session_generation: int = 0

    @classmethod
    def register(
        cls,
        *,
        id: UUID,
        email: str,
        display_name: str,
        password_hash: str,
        now: datetime,
        role: Role = Role.MEMBER,
    ) -> User:
        return cls(
            id=id,
            email=normalize_email(email),
            display_name=_clean_display_name(display_name),
            password_hash=password_hash,
            role=role,
            is_active=True,
            created_at=now,
            updated_at=now,
        )

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def rename(self, display_name: str, now: datetime) -> None:
        self.display_name = _clean_display_name(display_name)
        self.updated_at = now

    def change_password_hash(self, password_hash: str, now: datetime) -> None:
        self.password_hash = password_hash
        self.updated_at = now

    def assign_role(self, role: Role, now: datetime) -> None:
        self.role = role
        self.updated_at = now

    def set_active(self, is_active: bool, now: datetime) -> None:
        self.is_active = is_active
        self.updated_at = now
        if not is_active:
            self.end_sessions(now)

    def end_sessions(self, now: datetime) -> None:
        """Every access token issued so far stops working."""
        self.session_generation += 1
        self.updated_at = now


@dataclass(eq=False)
class RefreshToken:
    """One link of a rotating chain. Only a hash of the secret is kept.

    Tokens descending from one login share a `family_id`: presenting a token that was already used
    means it leaked, so the whole family is revoked.
    """

    id: UUID
    user_id: UUID
    family_id: UUID
    token_hash: str
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None = None
    revoked_at: datetime | None = None

    def is_usable(self, now: datetime) -> bool:
        return self.used_at is None and self.revoked_at is None and now < self.expires_at

    def mark_used(self, now: datetime) -> None:
        self.used_at = now

    def revoke(self, now: datetime) -> None:
        if self.revoked_at is None:
            self.revoked_at = now

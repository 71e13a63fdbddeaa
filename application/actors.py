"""Who is asking. Every use case receives the caller and decides what it may do."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from domain.users import Role


@dataclass(frozen=True)
class UserActor:
    """A signed-in person."""

    user_id: UUID
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def principal(self) -> str:
        return f"user:{self.user_id}"


@dataclass(frozen=True)
class BotKeyActor:
    """A service holding a bot API key: it acts for that one bot's chat routes and nothing else."""

    bot_id: UUID
    key_id: UUID

    @property
    def principal(self) -> str:
        return f"bot:{self.bot_id}"


Actor = UserActor | BotKeyActor

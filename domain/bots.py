"""Bots, what they know (knowledge entries) and the API keys that let services chat with them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from domain.errors import BotNotAcceptingMessages, InvalidTransition, InvalidValue

DEFAULT_FALLBACK_MESSAGE = "Sorry, I don't know the answer to that yet."
MAX_BOT_NAME_LENGTH = 100
MAX_QUESTION_LENGTH = 1_000
MAX_ANSWER_LENGTH = 8_000
MAX_EXAMPLES = 200
MAX_TAGS = 20


class BotStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    ARCHIVED = "archived"


class EngineKind(StrEnum):
    KNOWLEDGE = "knowledge"
    OPENAI = "openai"


def _required_text(field_name: str, raw: str, max_length: int) -> str:
    text = raw.strip()
    if not 1 <= len(text) <= max_length:
        raise InvalidValue(field_name, f"must be 1 to {max_length} characters long")
    return text


@dataclass(eq=False)
class Bot:
    id: UUID
    owner_id: UUID
    name: str
    description: str
    system_prompt: str
    greeting: str
    fallback_message: str
    engine: EngineKind
    engine_config: dict[str, Any]
    status: BotStatus
    version: int
    knowledge_revision: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def create(
        cls,
        *,
        id: UUID,
        owner_id: UUID,
        name: str,
        now: datetime,
        description: str = "",
        system_prompt: str = "",
        greeting: str = "",
        fallback_message: str = DEFAULT_FALLBACK_MESSAGE,
        engine: EngineKind = EngineKind.KNOWLEDGE,
        engine_config: dict[str, Any] | None = None,
    ) -> Bot:
        return cls(
            id=id,
            owner_id=owner_id,
            name=_required_text("name", name, MAX_BOT_NAME_LENGTH),
            description=description,
            system_prompt=system_prompt,
            greeting=greeting,
            fallback_message=fallback_message or DEFAULT_FALLBACK_MESSAGE,
            engine=engine,
            engine_config=dict(engine_config or {}),
            status=BotStatus.DRAFT,
            version=1,
            knowledge_revision=0,
            created_at=now,
            updated_at=now,
        )

    def _touch(self, now: datetime) -> None:
        # `version` guards the bot's own settings (ETag / If-Match); knowledge has its own counter.
        self.version += 1
        self.updated_at = now

    def configure(self, changes: dict[str, Any], now: datetime) -> None:
        """Apply a partial update of the bot's settings; unknown names are a programming error."""
        allowed = {
            "name",
            "description",
            "system_prompt",
            "greeting",
            "fallback_message",
            "engine",
            "engine_config",
        }
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidValue(sorted(unknown)[0], "cannot be changed")
        if "name" in changes:
            changes = {
                **changes,
                "name": _required_text("name", changes["name"], MAX_BOT_NAME_LENGTH),
            }
        if changes.get("fallback_message") == "":
            changes = {**changes, "fallback_message": DEFAULT_FALLBACK_MESSAGE}
        for name, value in changes.items():
            setattr(self, name, dict(value) if name == "engine_config" else value)
        self._touch(now)

    def publish(self, now: datetime) -> None:
        if self.status is BotStatus.ARCHIVED:
            raise InvalidTransition("an archived bot cannot be published again")
        if self.status is BotStatus.DRAFT:
            self.status = BotStatus.PUBLISHED
            self._touch(now)

    def archive(self, now: datetime) -> None:
        if self.status is not BotStatus.ARCHIVED:
            self.status = BotStatus.ARCHIVED
            self._touch(now)

    def ensure_accepts_messages(self) -> None:
        if self.status is BotStatus.ARCHIVED:
            raise BotNotAcceptingMessages("this bot is archived and answers no new messages")

    def note_knowledge_changed(self, now: datetime) -> None:
        """Every knowledge change moves the revision on, so engines know to rebuild their index."""
        self.knowledge_revision += 1
        self.updated_at = now


@dataclass(eq=False)
class KnowledgeEntry:
    id: UUID
    bot_id: UUID
    question: str
    answer: str
    examples: list[str]
    tags: list[str]
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def create(
        cls,
        *,
        id: UUID,
        bot_id: UUID,
        question: str,
        answer: str,
        now: datetime,
        examples: list[str] | None = None,
        tags: list[str] | None = None,
    ) -> KnowledgeEntry:
        entry = cls(
            id=id,
            bot_id=bot_id,
            question="",
            answer="",
            examples=[],
            tags=[],
            version=1,
            created_at=now,
            updated_at=now,
        )
        entry._assign(question=question, answer=answer, examples=examples or [], tags=tags or [])
        return entry

    def _assign(
        self,
        *,
        question: str | None = None,
        answer: str | None = None,
        examples: list[str] | None = None,
        tags: list[str] | None = None,
    ) -> None:
        if question is not None:
            self.question = _required_text("question", question, MAX_QUESTION_LENGTH)
        if answer is not None:
            self.answer = _required_text("answer", answer, MAX_ANSWER_LENGTH)
        if examples is not None:
            cleaned = [e.strip() for e in examples if e.strip()]
            if len(cleaned) > MAX_EXAMPLES:
                raise InvalidValue("examples", f"at most {MAX_EXAMPLES} examples")
            self.examples = cleaned
        if tags is not None:
            unique_tags = list(dict.fromkeys(t.strip().lower() for t in tags if t.strip()))
            if len(unique_tags) > MAX_TAGS:
                raise InvalidValue("tags", f"at most {MAX_TAGS} tags")
            self.tags = unique_tags

    def revise(
        self,
        now: datetime,
        *,
        question: str | None = None,
        answer: str | None = None,
        examples: list[str] | None = None,
        tags: list[str] | None = None,
    ) -> None:
        self._assign(question=question, answer=answer, examples=examples, tags=tags)
        self.version += 1
        self.updated_at = now


@dataclass(eq=False)
class BotApiKey:
    """A credential that acts for one bot only. The secret is never kept, only its hash."""

    id: UUID
    bot_id: UUID
    name: str
    prefix: str
    secret_hash: str
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def record_use(self, now: datetime) -> None:
        self.last_used_at = now

    def revoke(self, now: datetime) -> None:
        if self.revoked_at is None:
            self.revoked_at = now


@dataclass(frozen=True)
class KnowledgeDraft:
    """The fields of a knowledge entry before it has an identity (bulk imports, seeding)."""

    question: str
    answer: str
    examples: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

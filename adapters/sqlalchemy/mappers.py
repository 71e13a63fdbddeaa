"""Imperative (classical) mapping: the domain classes stay free of SQLAlchemy."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import configure_mappers, registry, relationship

from adapters.sqlalchemy import tables
from application.ports import IdempotencyRecord
from domain.bots import Bot, BotApiKey, KnowledgeEntry
from domain.conversations import Conversation, Feedback, Message
from domain.users import RefreshToken, User

mapper_registry = registry(metadata=tables.metadata)
_started = False


def _parent(entity: type) -> Any:
    # Never read (lazy="raise"): these many-to-one links exist only so the unit of work knows to
    # INSERT a parent before its children when both are added in one transaction.
    return relationship(entity, lazy="raise")


def start_mappers() -> None:
    """Map every entity once; later calls are no-ops (tests and workers call it freely)."""
    global _started
    if _started:
        return
    mapper_registry.map_imperatively(User, tables.users)
    mapper_registry.map_imperatively(
        RefreshToken, tables.refresh_tokens, properties={"_user": _parent(User)}
    )
    # The domain moves `version` itself; the mapper only adds "WHERE version = <loaded>" to the
    # UPDATE, which turns a lost race into StaleDataError instead of a silent overwrite.
    mapper_registry.map_imperatively(
        Bot,
        tables.bots,
        version_id_col=tables.bots.c.version,
        version_id_generator=False,
        properties={"_owner": _parent(User)},
    )
    mapper_registry.map_imperatively(
        KnowledgeEntry,
        tables.knowledge_entries,
        version_id_col=tables.knowledge_entries.c.version,
        version_id_generator=False,
        properties={"_bot": _parent(Bot)},
    )
    mapper_registry.map_imperatively(
        BotApiKey, tables.bot_api_keys, properties={"_bot": _parent(Bot)}
    )
    mapper_registry.map_imperatively(
        Conversation,
        tables.conversations,
        properties={"_bot": _parent(Bot), "_user": _parent(User)},
    )
    mapper_registry.map_imperatively(
        Message, tables.messages, properties={"_conversation": _parent(Conversation)}
    )
    mapper_registry.map_imperatively(
        Feedback,
        tables.feedback,
        properties={"_message": _parent(Message), "_conversation": _parent(Conversation)},
    )
    mapper_registry.map_imperatively(IdempotencyRecord, tables.idempotency_keys)
    # Now, not on the first ORM query: entities built straight from rows (queries/compiled.py)
    # may be read before the ORM has run anything.
    configure_mappers()
    _started = True

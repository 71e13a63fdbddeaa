"""The schema. Migrations are generated from this metadata and a test keeps the two in step."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

from domain.bots import BotStatus, EngineKind
from domain.conversations import ConversationStatus, MessageRole, Rating
from domain.users import Role

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC in and out: SQLite hands back naive datetimes, PostgreSQL aware ones."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused: pass timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(enum_cls: Any, name: str) -> sa.Enum:
    # Stored as plain strings with a CHECK constraint: adding a member needs no type migration.
    return sa.Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=20,
        values_callable=lambda members: [m.value for m in members],
    )


Json = sa.JSON().with_variant(JSONB(), "postgresql")


def _timestamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    ]


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("email", sa.String(254), nullable=False, unique=True),
    sa.Column("display_name", sa.String(100), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("role", _enum(Role, "role"), nullable=False),
    sa.Column("is_active", sa.Boolean(), nullable=False),
    *_timestamps(),
    sa.Column("session_generation", sa.Integer(), nullable=False, server_default="0"),
    sa.Index("ix_users_created_at_id", "created_at", "id"),
)

refresh_tokens = sa.Table(
    "refresh_tokens",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("family_id", sa.Uuid(), nullable=False, index=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("issued_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Column("used_at", UtcDateTime(), nullable=True),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
    sa.Index("ix_refresh_tokens_user_id", "user_id"),
)

bots = sa.Table(
    "bots",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("system_prompt", sa.Text(), nullable=False),
    sa.Column("greeting", sa.Text(), nullable=False),
    sa.Column("fallback_message", sa.Text(), nullable=False),
    sa.Column("engine", _enum(EngineKind, "engine_kind"), nullable=False),
    sa.Column("engine_config", Json, nullable=False),
    sa.Column("status", _enum(BotStatus, "bot_status"), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("knowledge_revision", sa.Integer(), nullable=False),
    *_timestamps(),
    sa.Index("ix_bots_owner_id_created_at", "owner_id", "created_at", "id"),
    sa.Index("ix_bots_status_created_at", "status", "created_at", "id"),
)

knowledge_entries = sa.Table(
    "knowledge_entries",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("bot_id", sa.Uuid(), sa.ForeignKey("bots.id", ondelete="CASCADE"), nullable=False),
    sa.Column("question", sa.Text(), nullable=False),
    sa.Column("answer", sa.Text(), nullable=False),
    sa.Column("examples", Json, nullable=False),
    sa.Column("tags", Json, nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    *_timestamps(),
    sa.Index("ix_knowledge_entries_bot_id_created_at", "bot_id", "created_at", "id"),
)

bot_api_keys = sa.Table(
    "bot_api_keys",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("bot_id", sa.Uuid(), sa.ForeignKey("bots.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("prefix", sa.String(32), nullable=False, unique=True),
    sa.Column("secret_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("last_used_at", UtcDateTime(), nullable=True),
    sa.Column("revoked_at", UtcDateTime(), nullable=True),
    sa.Index("ix_bot_api_keys_bot_id", "bot_id"),
)

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("bot_id", sa.Uuid(), sa.ForeignKey("bots.id", ondelete="CASCADE"), nullable=False),
    sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    sa.Column("external_user_id", sa.String(200), nullable=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("status", _enum(ConversationStatus, "conversation_status"), nullable=False),
    sa.Column("message_count", sa.Integer(), nullable=False),
    sa.Column("last_message_at", UtcDateTime(), nullable=False),
    *_timestamps(),
    sa.Index("ix_conversations_user_id_activity", "user_id", "last_message_at", "id"),
    sa.Index("ix_conversations_bot_id_activity", "bot_id", "last_message_at", "id"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column(
        "conversation_id",
        sa.Uuid(),
        sa.ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("role", _enum(MessageRole, "message_role"), nullable=False),
    sa.Column("content", sa.Text(), nullable=False),
    sa.Column("metadata", Json, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    # The unique (conversation, seq) pair is the last line of defence for a gap-free sequence.
    sa.UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_id_seq"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column(
        "message_id",
        sa.Uuid(),
        sa.ForeignKey("messages.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "conversation_id",
        sa.Uuid(),
        sa.ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("rating", _enum(Rating, "rating"), nullable=False),
    sa.Column("comment", sa.Text(), nullable=False),
    *_timestamps(),
    sa.Index("ix_feedback_conversation_id", "conversation_id"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("principal", sa.String(80), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    # NULL while the first request is still being answered; retries then get 409, not a duplicate.
    sa.Column("response", Json, nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False, index=True),
    # The attempt answering now holds the key until its lease ends; a retry after that (the
    # attempt died) takes the key over and answers the user message already stored.
    sa.Column("user_message_id", sa.Uuid(), nullable=True),
    sa.Column("lease_expires_at", UtcDateTime(), nullable=True),
)

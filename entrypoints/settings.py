"""Every setting, read from `CHATBOTS_*` environment variables or a `.env` file."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adapters.sqlalchemy.database import DEFAULT_DATABASE_URL

# Deliberately recognisable: production refuses to start with it (see `refuse_unsafe_defaults`).
DEVELOPMENT_SIGNING_KEY = "chatbots-development-signing-key-do-not-use-in-production"
MEMORY_DATABASE_URL = "memory://"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHATBOTS_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Environment = Field(
        Environment.DEVELOPMENT, description="`production` turns on the safety checks."
    )
    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="SQLAlchemy async URL: sqlite+aiosqlite:///... or "
        "postgresql+asyncpg://...; `memory://` runs on the in-memory adapters.",
    )
    db_pool_size: int = Field(
        20,
        ge=1,
        description="Database connections per worker (PostgreSQL and SQLite), kept open. "
        "Requests beyond it wait for a free one (up to 30 s) instead of opening more; workers "
        "x pool size must stay below the server's max_connections.",
    )
    db_max_overflow: int = Field(
        0,
        ge=0,
        description="Extra short-lived connections under load; 0 avoids the churn of opening "
        "and closing connections at exactly the moment the service is busiest.",
    )
    jwt_secret: SecretStr = Field(
        SecretStr(DEVELOPMENT_SIGNING_KEY),
        description="HS256 signing key for access tokens; at least 32 bytes in production.",
    )
    jwt_issuer: str = Field("chatbots", description="`iss` claim of issued access tokens.")
    jwt_audience: str = Field("chatbots-api", description="`aud` claim of access tokens.")
    access_token_ttl_seconds: int = Field(900, ge=30, description="Access token lifetime.")
    refresh_token_ttl_days: int = Field(30, ge=1, description="Refresh token lifetime.")
    redis_url: str | None = Field(
        None,
        description="redis://host:port/db for throttling counters shared by several workers; "
        "unset keeps them in process memory.",
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins per account or address before 429."
    )
    login_window_seconds: int = Field(
        900, ge=1, description="Window in which failed logins are counted."
    )
    max_body_bytes: int = Field(
        2 * 1024 * 1024, ge=1024, description="Larger request bodies get 413."
    )
    seed_example_bot: bool = Field(
        True, description="Create the example bot on first start (`make run`)."
    )
    log_level: str = Field("INFO", description="Python logging level.")

    @property
    def uses_memory(self) -> bool:
        return self.database_url == MEMORY_DATABASE_URL

    @model_validator(mode="after")
    def refuse_unsafe_defaults(self) -> Settings:
        if self.env is Environment.PRODUCTION:
            secret = self.jwt_secret.get_secret_value()
            if secret == DEVELOPMENT_SIGNING_KEY or len(secret.encode()) < 32:
                raise ValueError(
                    "CHATBOTS_JWT_SECRET must be set to a random key of at least 32 bytes "
                    "when CHATBOTS_ENV=production"
                )
        return self

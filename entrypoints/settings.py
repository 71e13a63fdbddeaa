"""Every setting, read from `CHATBOTS_*` environment variables or a `.env` file."""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from adapters.engines.openai import checked_offer
from adapters.outbound_policy import parse_allowed_hosts
from adapters.sqlalchemy.database import DEFAULT_DATABASE_URL

# Deliberately recognisable: production refuses to start with it (see `refuse_unsafe_defaults`).
DEVELOPMENT_SIGNING_KEY = "chatbots-development-signing-key-do-not-use-in-production"
MEMORY_DATABASE_URL = "memory://"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class JobsBackend(StrEnum):
    AUTO = "auto"
    EMBEDDED = "embedded"
    DISTRIBUTED = "distributed"
    MEMORY = "memory"


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
        5,
        ge=1,
        description="Failed sign-ins per account before 429 (attempts still being checked "
        "count too, so concurrent guesses cannot get past it).",
    )
    login_window_seconds: int = Field(
        900, ge=1, description="Window in which failed logins are counted."
    )
    login_max_failures_per_address: int = Field(
        100,
        ge=1,
        description="Failed sign-ins per client address, over all accounts, before 429. Far "
        "looser than per account: a dev machine, an office NAT or a proxy puts many people on "
        "one address, yet a password spray over many accounts from one address still stops.",
    )
    register_max_per_address: int = Field(
        20, ge=1, description="Registrations per client address within the window before 429."
    )
    register_window_seconds: int = Field(
        3600, ge=1, description="Window in which registrations per address are counted."
    )
    password_hash_queue_limit: int = Field(
        4,
        ge=1,
        description="Password hashes that may be running or queued per worker before a "
        "registration is refused at once with 429 (sign-ins still wait their turn): bounds how "
        "long a registration flood can delay a sign-in.",
    )
    trusted_proxies: Annotated[tuple[IPv4Network | IPv6Network, ...], NoDecode] = Field(
        (),
        description="Comma-separated IPs or CIDR networks of the reverse proxies in front of "
        "the API. Only a peer in this list may name the client in X-Forwarded-For; the client "
        "is then the right-most address there that is not a trusted proxy. Empty: the header "
        "is ignored.",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def parse_networks(cls, value: object) -> object:
        # strict=False: "10.0.0.1/8" means the network it sits in, as proxies' docs write it.
        if isinstance(value, str):
            value = [item for item in (part.strip() for part in value.split(",")) if item]
        if isinstance(value, (list, tuple)):
            return tuple(ip_network(item, strict=False) for item in value)
        return value

    max_body_bytes: int = Field(
        2 * 1024 * 1024, ge=1024, description="Larger request bodies get 413."
    )
    seed_example_bot: bool = Field(
        True, description="Create the example bot on first start (`make run`)."
    )
    log_level: str = Field("INFO", description="Python logging level.")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`json` writes every log line (ours and uvicorn's) as one JSON object: "
        "time, level, logger, message, request_id and the exception, if any.",
    )
    metrics_enabled: bool = Field(
        True,
        description="Serve GET /metrics (Prometheus text format) and count requests, reply "
        "latency and upstream failures. With several workers, set PROMETHEUS_MULTIPROC_DIR.",
    )
    sse_heartbeat_seconds: float = Field(
        15.0,
        gt=0,
        le=3600,
        description="A streamed answer sends an SSE comment (`: keep-alive`) after this many "
        "seconds without an event, so proxies do not cut it while an upstream thinks.",
    )
    docs_enabled: bool = Field(
        True,
        description="Serve /docs, /redoc and /openapi.json; turn off to publish no API "
        "description (e.g. on a public production host).",
    )

    # Outbound calls to URLs members choose (adapters/outbound.py) and the keys they may carry.
    upstream_keys: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Comma-separated names of environment variables a bot's `api_key_env` may "
        "name (e.g. OPENAI_API_KEY); empty offers none. Values are read once at start. A bot's "
        "owner also chooses its base_url, so offer only keys members may use. Names starting "
        "with CHATBOTS_ are refused at start: the service's own settings are never offered.",
    )
    outbound_allow_private: bool = Field(
        False,
        description="Let member-chosen URLs (chat upstreams, embeddings, webhooks) reach "
        "loopback and private networks (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7). "
        "Link-local (169.254/16 with cloud metadata, fe80::/10), multicast and reserved "
        "addresses stay refused; list a host in outbound_allowed_hosts to reach one.",
    )
    outbound_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Comma-separated `host` or `host:port` (IPv6 as `[::1]:8080`) that "
        "member-chosen URLs may reach whatever they resolve to, e.g. `ollama:11434` for a local "
        "Ollama; matched case-insensitively against the URL's host name or literal IP. Behind "
        "a proxy, targets this server cannot resolve itself must be listed.",
    )

    @field_validator("upstream_keys", "outbound_allowed_hosts", mode="before")
    @classmethod
    def split_comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("upstream_keys")
    @classmethod
    def refuse_service_settings_as_keys(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        return checked_offer(names)

    @field_validator("outbound_allowed_hosts")
    @classmethod
    def check_allowed_hosts(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        return parse_allowed_hosts(hosts)

    # Background jobs (adapters/jobs/, README "Background jobs"): which engine, where it works.
    jobs_backend: JobsBackend = Field(
        JobsBackend.AUTO,
        description="`auto` follows the database: `embedded` (huey on a SQLite file beside the "
        "database, worked inside the API process) with SQLite, `distributed` (procrastinate on "
        "PostgreSQL, worked by `chatbots worker` processes) with PostgreSQL, `memory` with "
        "`memory://`. Name one to override it.",
    )
    jobs_work_in_api: bool | None = Field(
        None,
        description="Whether the API process also works jobs. Unset: yes on the embedded and "
        "in-memory engines, no on the distributed one (its `chatbots worker` processes do).",
    )
    jobs_sqlite_path: str | None = Field(
        None,
        description="The embedded engine's file. Unset: the SQLite database's path followed by "
        "`-jobs` (`./chatbots.db-jobs`); required to run the embedded engine with PostgreSQL.",
    )
    jobs_concurrency: int = Field(4, ge=1, description="Jobs one process runs at once.")
    jobs_poll_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often an idle worker looks for jobs and due retries (the distributed "
        "engine is woken at once by LISTEN/NOTIFY too).",
    )
    jobs_lease_seconds: float = Field(
        30.0,
        ge=3,
        description="A running job whose worker gave no sign of life for this long is run again "
        "(worker heartbeats every third of it).",
    )
    jobs_grace_seconds: float = Field(
        30.0,
        ge=0,
        description="On shutdown, running jobs get this long to finish before they are "
        "interrupted and queued again.",
    )
    jobs_retention_days: int = Field(
        7, ge=1, description="Finished jobs (and their status) are forgotten after this."
    )
    jobs_pool_size: int = Field(
        4, ge=2, description="The distributed engine's PostgreSQL connections per process."
    )

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

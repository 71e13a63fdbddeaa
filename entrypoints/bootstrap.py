"""The composition root: the one place that knows which concrete adapter serves which port.

Used by the HTTP API, the CLI and in-process callers alike:

    container = build_container(Settings(database_url="memory://"))
    uow_factory = container.uow_factory()
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from functools import partial

from dependency_injector import containers, providers

from adapters.auth.jwt_tokens import JwtAccessTokenIssuer
from adapters.auth.passwords import Argon2PasswordHasher
from adapters.engines.config import EngineConfigValidator
from adapters.engines.knowledge import KnowledgeEngine
from adapters.engines.openai import offered_upstream_keys
from adapters.memory import InMemoryDatabase, InMemoryUnitOfWork
from adapters.memory.readiness import InMemorySchemaInspector
from adapters.outbound_policy import OutboundPolicy
from adapters.sqlalchemy.database import create_engine
from adapters.sqlalchemy.readiness import SqlAlchemySchemaInspector
from adapters.sqlalchemy.unit_of_work import SqlAlchemyUnitOfWorkFactory
from adapters.system import RandomIdGenerator, SystemClock
from adapters.throttling import InMemoryAttemptCounter, RedisAttemptCounter, redis_client
from application.bots import BotApiKeys, BotKnowledge, BotLifecycle, load_knowledge
from application.conversations import ConversationUseCases
from application.housekeeping import housekeeping_jobs
from application.identity import IdentityPolicy, IdentityService
from application.ports import Reply, ReplyEngine, ReplyEvent, ReplyRequest
from domain.bots import Bot, EngineKind
from entrypoints.settings import Settings
from entrypoints.worker import build_job_engine


def _storage_kind(settings: Settings) -> str:
    return "memory" if settings.uses_memory else "sql"


def _counter_kind(settings: Settings) -> str:
    return "redis" if settings.redis_url else "memory"


class OpenAIEngineOnDemand:
    """The `openai` engine, built when a bot first answers through an upstream: a worker whose
    bots all answer from knowledge never loads httpx and its client (~6 MB of its memory).

    It gets the upstream keys the operator offers, read from the environment once when the
    container builds it (never the environment itself), and the guarded client's allowances.
    """

    def __init__(
        self,
        knowledge: KnowledgeEngine,
        *,
        upstream_keys: Mapping[str, str],
        key_offers: Sequence[str],
        outbound: OutboundPolicy,
    ) -> None:
        self._knowledge = knowledge
        self._upstream_keys = dict(upstream_keys)
        self._key_offers = tuple(key_offers)
        self._outbound = outbound
        self._engine: ReplyEngine | None = None
        self._close: Callable[[], Awaitable[None]] | None = None

    def answer_now(self, bot: Bot, message: str) -> Reply | None:
        return None  # every reply is a call to the upstream

    def reply(self, request: ReplyRequest) -> AsyncIterator[ReplyEvent]:
        if self._engine is None:
            from adapters.engines.openai import OpenAICompatibleEngine, build_http_client

            client = build_http_client(self._outbound)
            self._engine, self._close = (
                OpenAICompatibleEngine(
                    client,
                    self._knowledge,
                    upstream_keys=self._upstream_keys,
                    key_offers=self._key_offers,
                ),
                client.aclose,
            )
        return self._engine.reply(request)

    async def aclose(self) -> None:
        if self._close is not None:
            await self._close()


def _outbound_policy(settings: Settings) -> OutboundPolicy:
    return OutboundPolicy.of(
        allow_private=settings.outbound_allow_private,
        allowed_hosts=settings.outbound_allowed_hosts,
    )


def _offered_upstream_keys(settings: Settings) -> dict[str, str]:
    return offered_upstream_keys(settings.upstream_keys, os.environ)


def _identity_policy(settings: Settings) -> IdentityPolicy:
    return IdentityPolicy(
        refresh_token_ttl=timedelta(days=settings.refresh_token_ttl_days),
        login_max_failures=settings.login_max_failures,
        login_window_seconds=settings.login_window_seconds,
        login_max_failures_per_address=settings.login_max_failures_per_address,
        register_max_per_address=settings.register_max_per_address,
        register_window_seconds=settings.register_window_seconds,
    )


class Container(containers.DeclarativeContainer):
    settings = providers.Dependency(instance_of=Settings)
    storage = providers.Callable(_storage_kind, settings)

    clock = providers.Singleton(SystemClock)
    ids = providers.Singleton(RandomIdGenerator)

    engine = providers.Singleton(
        create_engine,
        settings.provided.database_url,
        pool_size=settings.provided.db_pool_size,
        max_overflow=settings.provided.db_max_overflow,
    )
    memory_database = providers.Singleton(InMemoryDatabase)

    uow_factory = providers.Selector(
        storage,
        sql=providers.Singleton(SqlAlchemyUnitOfWorkFactory, engine),
        memory=providers.Singleton(partial, InMemoryUnitOfWork, memory_database),
    )
    schema_inspector = providers.Selector(
        storage,
        sql=providers.Singleton(SqlAlchemySchemaInspector, engine),
        memory=providers.Singleton(InMemorySchemaInspector),
    )

    password_hasher = providers.Singleton(
        Argon2PasswordHasher, max_pending=settings.provided.password_hash_queue_limit
    )
    access_tokens = providers.Singleton(
        JwtAccessTokenIssuer,
        settings.provided.jwt_secret.get_secret_value.call(),
        issuer=settings.provided.jwt_issuer,
        audience=settings.provided.jwt_audience,
        ttl_seconds=settings.provided.access_token_ttl_seconds,
    )
    # Created only when selected below; it connects lazily on the first command.
    redis = providers.Singleton(redis_client, settings.provided.redis_url)
    attempts = providers.Selector(
        providers.Callable(_counter_kind, settings),
        memory=providers.Singleton(InMemoryAttemptCounter),
        redis=providers.Singleton(RedisAttemptCounter, redis),
    )
    identity = providers.Singleton(
        IdentityService,
        uow_factory=uow_factory,
        hasher=password_hasher,
        tokens=access_tokens,
        attempts=attempts,
        clock=clock,
        ids=ids,
        policy=providers.Callable(_identity_policy, settings),
    )

    engine_rules = providers.Singleton(
        EngineConfigValidator, offered_upstream_keys=settings.provided.upstream_keys
    )
    knowledge_engine = providers.Singleton(
        KnowledgeEngine, load_entries=providers.Callable(partial, load_knowledge, uow_factory)
    )
    openai_engine = providers.Singleton(
        OpenAIEngineOnDemand,
        knowledge_engine,
        upstream_keys=providers.Callable(_offered_upstream_keys, settings),
        key_offers=settings.provided.upstream_keys,
        outbound=providers.Callable(_outbound_policy, settings),
    )
    engines = providers.Dict(
        {EngineKind.KNOWLEDGE: knowledge_engine, EngineKind.OPENAI: openai_engine}
    )
    conversations = providers.Singleton(
        ConversationUseCases.build, uow_factory=uow_factory, engines=engines, clock=clock, ids=ids
    )
    bots = providers.Singleton(
        BotLifecycle, uow_factory=uow_factory, engine_rules=engine_rules, clock=clock, ids=ids
    )
    knowledge = providers.Singleton(BotKnowledge, uow_factory=uow_factory, clock=clock, ids=ids)
    api_keys = providers.Singleton(BotApiKeys, uow_factory=uow_factory, clock=clock, ids=ids)

    # Background jobs: the kinds the application declares, and the engine the settings select
    # (entrypoints/worker.py); use cases get `jobs` as their `JobQueue`.
    job_registry = providers.Singleton(
        housekeeping_jobs, idempotency=conversations.provided.idempotency
    )
    jobs = providers.Singleton(build_job_engine, settings, job_registry)


def build_container(settings: Settings | None = None) -> Container:
    return Container(settings=settings or Settings())


async def shutdown(container: Container) -> None:
    """Release what the container opened (the engine's connection pool); background jobs
    stop first, while the database is still there for the jobs that are finishing."""
    await container.jobs().aclose()
    if not container.settings().uses_memory:
        await container.engine().dispose()
    if container.settings().redis_url:
        await container.redis().aclose()
    container.password_hasher().close()
    await container.openai_engine().aclose()

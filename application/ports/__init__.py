"""Ports: what the use cases need from the outside world, named by role, one room per role.

- `store`: repositories per aggregate and their filters, the conversation log (the hot write),
  the unit of work and its factory, the stats reader, the schema inspector.
- `engines`: reply engines, their requests and events, knowledge retrieval, engine settings.
- `security`: password hashing, access tokens, attempt counting.
- `clock`: the time and new ids.

Adapters implement these protocols (`adapters/sqlalchemy`, `adapters/memory`, ...). Every
repository is reached through a unit of work, whose `commit()` is the only way a change persists.
This package is their public face: import from `application.ports`, whichever room a port is in.
"""

from application.ports.clock import Clock, IdGenerator
from application.ports.engines import (
    EngineConfigRules,
    KnowledgeRetriever,
    Reply,
    ReplyChunk,
    ReplyDone,
    ReplyEngine,
    ReplyEvent,
    ReplyRequest,
    RetrievedEntry,
)
from application.ports.security import (
    AccessClaims,
    AccessTokenIssuer,
    AttemptCounter,
    HashingBusy,
    PasswordHasher,
)
from application.ports.store import (
    ApiKeyRepository,
    BotFilter,
    BotRepository,
    BotStats,
    ConversationFilter,
    ConversationLog,
    ConversationRepository,
    FeedbackRepository,
    IdempotencyRecord,
    IdempotencyRepository,
    KnowledgeRepository,
    MessageRepository,
    Readiness,
    RefreshTokenRepository,
    SchemaInspector,
    StatsReader,
    UnitOfWork,
    UnitOfWorkFactory,
    UserRepository,
)

__all__ = [
    "AccessClaims",
    "AccessTokenIssuer",
    "ApiKeyRepository",
    "AttemptCounter",
    "BotFilter",
    "BotRepository",
    "BotStats",
    "Clock",
    "ConversationFilter",
    "ConversationLog",
    "ConversationRepository",
    "EngineConfigRules",
    "FeedbackRepository",
    "HashingBusy",
    "IdGenerator",
    "IdempotencyRecord",
    "IdempotencyRepository",
    "KnowledgeRepository",
    "KnowledgeRetriever",
    "MessageRepository",
    "PasswordHasher",
    "Readiness",
    "RefreshTokenRepository",
    "Reply",
    "ReplyChunk",
    "ReplyDone",
    "ReplyEngine",
    "ReplyEvent",
    "ReplyRequest",
    "RetrievedEntry",
    "SchemaInspector",
    "StatsReader",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "UserRepository",
]

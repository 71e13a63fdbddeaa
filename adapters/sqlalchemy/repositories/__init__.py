"""SQLAlchemy implementations of the repository ports, one module per aggregate.

Every method has one route, fixed when its unit of work is built: the ORM session, or a named
read (queries/reads.py) where the unit of work's kind calls for it (lookups.py). Queries are
explicit; nothing lazy-loads. Every method answers database errors with the one table of
errors.py.
"""

from adapters.sqlalchemy.repositories.bots import (
    SqlAlchemyApiKeyRepository,
    SqlAlchemyBotRepository,
    SqlAlchemyKnowledgeRepository,
)
from adapters.sqlalchemy.repositories.conversations import (
    SqlAlchemyConversationRepository,
    SqlAlchemyFeedbackRepository,
    SqlAlchemyMessageRepository,
)
from adapters.sqlalchemy.repositories.idempotency import SqlAlchemyIdempotencyRepository
from adapters.sqlalchemy.repositories.stats import SqlAlchemyStatsReader
from adapters.sqlalchemy.repositories.users import (
    SqlAlchemyRefreshTokenRepository,
    SqlAlchemyUserRepository,
)

__all__ = [
    "SqlAlchemyApiKeyRepository",
    "SqlAlchemyBotRepository",
    "SqlAlchemyConversationRepository",
    "SqlAlchemyFeedbackRepository",
    "SqlAlchemyIdempotencyRepository",
    "SqlAlchemyKnowledgeRepository",
    "SqlAlchemyMessageRepository",
    "SqlAlchemyRefreshTokenRepository",
    "SqlAlchemyStatsReader",
    "SqlAlchemyUserRepository",
]

"""The clock and the id source: ports so that tests can pin time and identities."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class RandomIdGenerator:
    def new_id(self) -> uuid.UUID:
        return uuid.uuid4()

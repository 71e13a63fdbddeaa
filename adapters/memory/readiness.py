"""The in-memory store has no schema to migrate: it is ready as soon as the process is."""

from __future__ import annotations

from application.ports import Readiness


class InMemorySchemaInspector:
    async def check(self) -> Readiness:
        return Readiness(True, "ok (in-memory storage)")

"""Readiness: can this process serve requests right now?"""

from __future__ import annotations

from application.ports import Readiness, SchemaInspector


async def check_readiness(inspector: SchemaInspector) -> Readiness:
    """Ready when the database answers and its schema is at the migration head this code expects."""
    return await inspector.check()

"""Five-field cron schedules in UTC, read by croniter (procrastinate's own dependency)."""

from __future__ import annotations

from datetime import datetime

from croniter import croniter

from adapters.jobs import minute_of


def cron_matches(cron: str, moment: datetime) -> bool:
    """Whether the minute holding `moment` is one of the schedule's ticks."""
    return bool(croniter.match(cron, minute_of(moment)))

"""Log lines never carry what a database error quotes.

A driver's error text may quote the values of a row ("Key (email)=(ada@example.com) already
exists") and SQLAlchemy's adds the statement's parameters unless `hide_parameters` is set. This
filter rewrites every logged exception as its frames and class names, keeping the message only
of errors that do not come from a database driver.
"""

from __future__ import annotations

import logging
import traceback
from typing import Final

_DATABASE_ERROR_MODULES: Final = ("sqlalchemy", "asyncpg", "sqlite3", "aiosqlite", "psycopg")
# The loggers whose handlers every line goes through: the root (ours) and uvicorn's.
LOGGERS_WITH_HANDLERS: Final = ("", "uvicorn", "uvicorn.error", "uvicorn.access")
# Set on a record whose exception was rewritten: the message alone, and the safe description
# (JSON lines keep them apart; text lines read both from the rewritten message).
MESSAGE_ALONE: Final = "message_alone"
SAFE_EXCEPTION: Final = "safe_exception"


def _quotes_data(error: BaseException) -> bool:
    return any(
        cls.__module__.split(".", 1)[0] in _DATABASE_ERROR_MODULES for cls in type(error).__mro__
    )


def describe_safely(error: BaseException) -> str:
    """The traceback of `error` and its causes, without a database error's message."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(traceback.format_tb(current.__traceback__))
        name = f"{type(current).__module__}.{type(current).__qualname__}"
        said = "(message withheld: database error)" if _quotes_data(current) else str(current)
        parts.append(f"{frames}{name}: {said}")
        current = current.__cause__ or current.__context__
    return "\nCaused by:\n".join(reversed(parts))


class WithholdDatabaseErrorText(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            message, described = record.getMessage(), describe_safely(record.exc_info[1])
            setattr(record, MESSAGE_ALONE, message)
            setattr(record, SAFE_EXCEPTION, described)
            record.msg = f"{message}\n{described}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def install_log_safety() -> None:
    """Put the filter on every handler the process logs through (ours and uvicorn's)."""
    safety = WithholdDatabaseErrorText()
    for name in LOGGERS_WITH_HANDLERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, WithholdDatabaseErrorText) for f in handler.filters):
                handler.addFilter(safety)

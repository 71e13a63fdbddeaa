"""Which request a log line belongs to, and the shape of the line: text or one JSON object.

The API puts each request's id in `REQUEST_ID` while it handles the request
(entrypoints/api/observed.py). A filter on every handler copies it onto each record as
`request_id`, so every line written meanwhile carries it: ours, uvicorn's access and error
lines, and those of the task that finishes an abandoned stream (a task copies the context it
is created in). The handlers are the ones log_safety.py filters, with the same reach.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final

from entrypoints.log_safety import (
    LOGGERS_WITH_HANDLERS,
    MESSAGE_ALONE,
    SAFE_EXCEPTION,
    describe_safely,
)

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
REQUEST_ID_FIELD: Final = "request_id"
# Set on an error that escapes a request: the server logs it after the request's context is gone.
ERROR_REQUEST_ID: Final = "chatbots_request_id"


def _request_id(record: logging.LogRecord) -> str | None:
    request_id = REQUEST_ID.get()
    if request_id is None and record.exc_info and record.exc_info[1] is not None:
        request_id = getattr(record.exc_info[1], ERROR_REQUEST_ID, None)
    return request_id


class RequestIdField(logging.Filter):
    """Sets `record.request_id`: the id of the request being handled (or that an error being
    logged escaped from), else None. Put before log_safety's filter, which drops `exc_info`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, REQUEST_ID_FIELD, None) is None:
            setattr(record, REQUEST_ID_FIELD, _request_id(record))
        return True


class _Wrapping(logging.Formatter):
    """A formatter that replaced a handler's own, kept so that the other format can restore it."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner


class TextWithRequestId(_Wrapping):
    """The handler's own line, `[<request id>] ` in front while a request is handled."""

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        request_id = getattr(record, REQUEST_ID_FIELD, None)
        return f"[{request_id}] {text}" if request_id else text


class JsonLines(_Wrapping):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, request_id, and
    `exception` (frames and classes, without what a database error quotes) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        exception: str | None = getattr(record, SAFE_EXCEPTION, None)
        if exception is not None:  # log_safety rewrote the record: the message had it appended
            message = str(getattr(record, MESSAGE_ALONE, record.getMessage()))
        else:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exception = describe_safely(record.exc_info[1])
        created = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            "request_id": getattr(record, REQUEST_ID_FIELD, None) or _request_id(record),
        }
        if exception is not None:
            entry["exception"] = exception
        if record.stack_info:
            entry["stack"] = record.stack_info
        # ASCII: a lone surrogate a client sent must not make the line unwritable.
        return json.dumps(entry, default=str)


def install_log_format(json_lines: bool) -> None:
    """Give every handler the process logs through (ours and uvicorn's) the request id field
    and the chosen format. Idempotent: another app in the same process may choose again."""
    field = RequestIdField()
    for name in LOGGERS_WITH_HANDLERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RequestIdField) for f in handler.filters):
                handler.filters.insert(0, field)
            current = handler.formatter
            own = current.inner if isinstance(current, _Wrapping) else current
            wanted = JsonLines if json_lines else TextWithRequestId
            if not isinstance(current, wanted):
                handler.setFormatter(wanted(own or logging.Formatter()))

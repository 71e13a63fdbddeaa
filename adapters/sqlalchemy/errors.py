"""What the database's refusals mean to the application: the one table, and the one translator.

Every statement the SQL adapter runs — through the ORM session, through Core, or compiled on the
driver's own connection (queries/) — fails into the same table, by what the database said (its
SQLSTATE on PostgreSQL, its extended result code on SQLite), never by the wording of a message:

| the database says | the application hears |
|---|---|
| unique or primary key violated | `DuplicateKey(resource=<table>)` |
| foreign key, NOT NULL or CHECK violated | `IntegrityViolation` |
| SQLite busy or locked; PostgreSQL serialization failure, deadlock, lock timeout | `StoreBusy` |
| no pooled connection came free in time (the pool's timeout) | `StoreBusy` |
| the ORM's version check matched no row | `ConcurrentUpdate` |
| a table is missing (the database is not migrated) | `StoreNotReady` |

`StoreBusy` means retry shortly (the API answers 503 with Retry-After). Anything else (a broken
connection, a bug in a statement) goes up as it is.
"""

from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy.orm.exc import StaleDataError

from application.errors import (
    ApplicationError,
    ConcurrentUpdate,
    DuplicateKey,
    IntegrityViolation,
    StoreBusy,
    StoreNotReady,
)

Meaning = type[DuplicateKey] | type[IntegrityViolation] | type[StoreBusy] | type[StoreNotReady]

# PostgreSQL: SQLSTATE codes (Appendix A of its manual).
POSTGRESQL: Final[dict[str, Meaning]] = {
    "23505": DuplicateKey,  # unique_violation
    "23503": IntegrityViolation,  # foreign_key_violation
    "23502": IntegrityViolation,  # not_null_violation
    "23514": IntegrityViolation,  # check_violation
    "40001": StoreBusy,  # serialization_failure
    "40P01": StoreBusy,  # deadlock_detected
    "55P03": StoreBusy,  # lock_not_available: lock_timeout, NOWAIT
    "42P01": StoreNotReady,  # undefined_table
}

# SQLite: extended result codes, by name (`sqlite3.Error.sqlite_errorname`).
SQLITE: Final[dict[str, Meaning]] = {
    "SQLITE_CONSTRAINT_UNIQUE": DuplicateKey,
    "SQLITE_CONSTRAINT_PRIMARYKEY": DuplicateKey,
    "SQLITE_CONSTRAINT_FOREIGNKEY": IntegrityViolation,
    "SQLITE_CONSTRAINT_NOTNULL": IntegrityViolation,
    "SQLITE_CONSTRAINT_CHECK": IntegrityViolation,
    "SQLITE_BUSY": StoreBusy,  # another connection holds the write lock past the busy timeout
    "SQLITE_BUSY_SNAPSHOT": StoreBusy,
    "SQLITE_BUSY_RECOVERY": StoreBusy,
    "SQLITE_BUSY_TIMEOUT": StoreBusy,
    "SQLITE_LOCKED": StoreBusy,
    "SQLITE_LOCKED_SHAREDCACHE": StoreBusy,
}

DETAILS: Final[dict[Meaning, str]] = {
    DuplicateKey: "A unique rule was broken.",
    IntegrityViolation: "The change breaks a rule of the store.",
    StoreBusy: "The database is busy; try again shortly.",
    StoreNotReady: "The database is not migrated; run `chatbots migrate`.",
}


def _driver_error(error: BaseException) -> BaseException:
    """The driver's own exception under SQLAlchemy's wrappers (`.orig`, then the cause)."""
    found = error
    if isinstance(found, sa_exc.DBAPIError) and found.orig is not None:
        found = found.orig
    # SQLAlchemy's asyncpg adapter wraps asyncpg's exception in one of its own.
    cause = found.__cause__
    if cause is not None and getattr(cause, "sqlstate", None) is not None:
        found = cause
    return found


def _sqlite_table(error: sqlite3.Error) -> str | None:
    # "UNIQUE constraint failed: users.email": the one place SQLite names the table.
    _, _, columns = str(error).partition(": ")
    table, dot, _ = columns.partition(".")
    return table if dot else None


def translate(error: BaseException) -> ApplicationError | None:
    """The application's meaning of `error`, or None when it has none (it then goes up as is)."""
    if isinstance(error, StaleDataError):
        return ConcurrentUpdate("The resource was changed by another request.")
    if isinstance(error, sa_exc.TimeoutError):  # the pool's: no connection came free in time
        return StoreBusy("No database connection came free in time; try again shortly.")
    found = _driver_error(error)
    table: str | None
    if isinstance(found, sqlite3.Error):
        meaning = SQLITE.get(getattr(found, "sqlite_errorname", ""))
        # SQLite gives a missing table only its generic SQLITE_ERROR code: the text tells.
        if meaning is None and str(found).startswith("no such table"):
            meaning = StoreNotReady
        table = _sqlite_table(found) if meaning is DuplicateKey else None
    else:
        meaning = POSTGRESQL.get(str(getattr(found, "sqlstate", "")))
        table = getattr(found, "table_name", None)
    if meaning is None:
        return None
    if meaning is DuplicateKey:
        return DuplicateKey(DETAILS[meaning], resource=table)
    return meaning(DETAILS[meaning])


Result = TypeVar("Result")
Class = TypeVar("Class", bound=type)


def translated(
    method: Callable[..., Coroutine[Any, Any, Result]],
) -> Callable[..., Coroutine[Any, Any, Result]]:
    """`method`, raising the application's meaning of a database error instead of the error."""

    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Result:
        try:
            return await method(*args, **kwargs)
        except Exception as error:
            meaning = translate(error)
            if meaning is None:
                raise
            raise meaning from error

    return call


def translating(cls: Class) -> Class:
    """Applies `translated` to every public coroutine method of a repository class: whatever
    statement a method runs, its caller sees the table above."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            setattr(cls, name, translated(member))
    return cls

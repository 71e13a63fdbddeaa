"""Application errors: what a use case answers when it will not do what was asked.

The HTTP status of each lives in one table in the API entrypoint, not here.
"""

from __future__ import annotations


class ApplicationError(Exception):
    """Base of every refusal a use case can give."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(ApplicationError):
    """Missing, or not the caller's to see: the two are never told apart."""


class AuthenticationFailed(ApplicationError):
    """The credentials are missing, wrong, expired or revoked."""


class Forbidden(ApplicationError):
    """The caller is known but its role does not allow this."""


class Conflict(ApplicationError):
    """The request clashes with current state (duplicate email, closed conversation, ...)."""


class PreconditionFailed(ApplicationError):
    """The caller's `If-Match` version is not the current one."""


class Throttled(ApplicationError):
    def __init__(self, detail: str, retry_after_seconds: int) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class ConcurrentUpdate(ApplicationError):
    """Raised by a unit of work when an optimistic version check lost a race at commit: the row
    is no longer at the version it was read at. Use cases turn it into PreconditionFailed when
    the caller sent `If-Match`, else into Conflict."""


class DuplicateKey(ApplicationError):
    """Raised by a unit of work when a unique rule (email, key prefix, ...) is broken.

    `resource` names what was duplicated (the table, e.g. "idempotency_keys"), so a use case can
    tell the race it expects from any other duplicate.
    """

    def __init__(self, detail: str = "", *, resource: str | None = None) -> None:
        super().__init__(detail)
        self.resource = resource


class IntegrityViolation(ApplicationError):
    """A write broke a rule of the store other than uniqueness (a missing parent row, a NOT NULL
    or CHECK constraint): a bug or a race with a delete, never the caller's fault to retry."""


class StoreNotReady(ApplicationError):
    """The store answers but lacks the schema this code expects: it is not migrated yet."""


class StoreBusy(ApplicationError):
    """The store could not take the write now (locked, serialisation failure, deadlock, no free
    connection): retrying shortly is expected to work."""

    def __init__(self, detail: str = "", retry_after_seconds: int = 1) -> None:
        super().__init__(detail)
        self.retry_after_seconds = retry_after_seconds


class UpstreamFailed(ApplicationError):
    """A reply engine's upstream failed (bad answer, refused connection, cut stream)."""


class UpstreamTimeout(UpstreamFailed):
    """A reply engine's upstream did not answer in time."""

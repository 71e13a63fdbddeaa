"""Nothing waits unbounded: the waits of one reply, and reading a response under them.

Connecting, the first streamed event, each gap between events and the whole reply each have a
deadline. `asyncio.timeout_at` goes around every await that reads from the network, never
around a `yield`, so a slow consumer is never cancelled by our clock. Apart from the exchange
(`upstream`) so that every read (a stream, a whole answer, an error body) goes through the same
few bounded steps, and each missed deadline becomes the same `UpstreamTimeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Final

import httpx

from adapters.engines.openai.config import UpstreamSettings
from adapters.engines.openai.redaction import Redactor
from application.errors import UpstreamFailed, UpstreamTimeout

DEFAULT_CONNECT_TIMEOUT: Final = 5.0
DEFAULT_READ_TIMEOUT: Final = 60.0
DEFAULT_TOTAL_TIMEOUT: Final = 300.0


@dataclass(frozen=True)
class CallPolicy:
    """How long to wait for what, and how often to try again; the same for every bot."""

    max_retries: int
    backoff_seconds: float
    max_retry_after_seconds: float
    connect_timeout: float
    first_byte_timeout: float
    read_timeout: float
    total_timeout: float

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must not be negative")
        if self.backoff_seconds < 0 or self.max_retry_after_seconds < 0:
            raise ValueError("backoff_seconds and max_retry_after_seconds must not be negative")
        waits = (self.connect_timeout, self.first_byte_timeout, self.read_timeout)
        if not all(math.isfinite(wait) and wait > 0 for wait in (*waits, self.total_timeout)):
            raise ValueError("every timeout must be a finite number of seconds greater than 0")


@dataclass
class ReadDeadline:
    """When the next read must have brought something. Only what counts as content moves it
    on (an event with data in a stream, any bytes of a plain body): keep-alives do not."""

    at: float
    started: bool = False

    def move_to(self, at: float) -> None:
        self.at = at
        self.started = True


@dataclass
class TimedReads:
    """One reply's waits (the policy's, or the bot's `timeout_seconds`) and its total deadline,
    with the bounded reads every part of the exchange uses."""

    policy: CallPolicy
    settings: UpstreamSettings
    redact: Redactor
    deadline: float

    @property
    def first_byte_wait(self) -> float:
        return self.settings.wait_override or self.policy.first_byte_timeout

    @property
    def between_chunks_wait(self) -> float:
        return self.settings.wait_override or self.policy.read_timeout

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _timed_chunks(
        self, response: httpx.Response, wait: ReadDeadline
    ) -> AsyncGenerator[bytes, None]:
        """The body's bytes, each read bounded by `wait` (which the reader moves on when content
        arrives) and by the reply's total deadline."""
        chunks = response.aiter_bytes()
        try:
            while True:
                try:
                    async with asyncio.timeout_at(min(wait.at, self.deadline)):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except (TimeoutError, httpx.HTTPError) as error:
                    if not wait.started and isinstance(
                        error, TimeoutError | httpx.TimeoutException
                    ):
                        raise self._missed_first_byte() from None
                    raise self._read_failure(error) from None
                if chunk:
                    yield chunk
        finally:
            if isinstance(chunks, AsyncGenerator):
                await chunks.aclose()

    async def _bounded_body(
        self, response: httpx.Response, limit: int, first_byte_deadline: float, *, strict: bool
    ) -> bytes:
        """Up to `limit` bytes of a body, read under the same deadlines; always closes it.

        With `strict`, a body too long, too slow or broken is a failure; without, the part read
        so far will do (an error body is read only for its message).
        """
        body = bytearray()
        wait = ReadDeadline(first_byte_deadline)
        try:
            async with contextlib.aclosing(self._timed_chunks(response, wait)) as chunks:
                async for chunk in chunks:
                    wait.move_to(self._now() + self.between_chunks_wait)  # bytes are content here
                    body += chunk
                    if len(body) > limit:
                        if strict:
                            raise UpstreamFailed("the model upstream's answer is too large")
                        break
        except UpstreamFailed:
            if strict:
                raise
        finally:
            with contextlib.suppress(httpx.HTTPError):
                await response.aclose()
        return bytes(body[:limit])

    def _missed_first_byte(self) -> UpstreamTimeout:
        if self._now() >= self.deadline:
            return self._missed_total()
        return UpstreamTimeout(
            f"the model upstream did not start answering within {self.first_byte_wait:g} s"
        )

    def _missed_total(self) -> UpstreamTimeout:
        return UpstreamTimeout(
            f"the model upstream did not answer in full within {self.policy.total_timeout:g} s"
        )

    def _read_failure(self, error: BaseException) -> UpstreamFailed:
        if isinstance(error, TimeoutError | httpx.TimeoutException):
            if self._now() >= self.deadline:
                return self._missed_total()
            return UpstreamTimeout(
                f"the model upstream stopped sending for more than {self.between_chunks_wait:g} s"
            )
        if isinstance(error, httpx.RemoteProtocolError):
            return UpstreamFailed(
                "the model upstream closed the connection in the middle of the reply"
            )
        return UpstreamFailed(
            f"reading the model upstream's answer failed ({type(error).__name__})"
        )

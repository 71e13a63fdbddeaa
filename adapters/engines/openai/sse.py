"""Server-sent events as chat-completion servers send them (the WHATWG `text/event-stream` rules).

Only events that carry `data:` come out: keep-alive comments (`: ping`), blank lines and
`event:`/`id:` lines on their own are framing. The engine's deadlines count those events, never
bytes, so an upstream that only says it is still there cannot hold a reply open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from application.errors import UpstreamFailed

# An upstream that sends a line this long without a newline is not streaming chat chunks.
MAX_STREAM_LINE_BYTES: Final = 1024 * 1024
# Data lines of one event: past this, the upstream is not sending chat chunks either.
MAX_EVENT_BYTES: Final = 4 * 1024 * 1024


@dataclass(frozen=True)
class StreamEvent:
    kind: str
    data: str


class EventStreamDecoder:
    """Splits a `text/event-stream` body into events.

    Bytes arrive cut anywhere; a line may span chunks. Comment lines (keep-alives) are skipped;
    a blank line ends an event whose `data:` lines are joined with newlines.
    """

    def __init__(self) -> None:
        self._pending = b""
        self._data_lines: list[str] = []
        self._data_bytes = 0
        self._kind = "message"
        self.events_seen = 0

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        lines = (self._pending + chunk).split(b"\n")
        self._pending = lines.pop()
        if len(self._pending) > MAX_STREAM_LINE_BYTES:
            raise UpstreamFailed("the model upstream sent a stream line that is far too long")
        return [event for line in lines if (event := self._take_line(line)) is not None]

    def finish(self) -> list[StreamEvent]:
        """Events still pending when the body ends (a last event without its blank line)."""
        events = []
        if self._pending and (event := self._take_line(self._pending)) is not None:
            events.append(event)
        self._pending = b""
        if (event := self._take_line(b"")) is not None:
            events.append(event)
        return events

    def _take_line(self, raw: bytes) -> StreamEvent | None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if not raw:
            if not self._data_lines:
                self._kind = "message"
                return None
            event = StreamEvent(self._kind, "\n".join(self._data_lines))
            self._data_lines = []
            self._data_bytes = 0
            self._kind = "message"
            self.events_seen += 1
            return event
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UpstreamFailed("the model upstream sent a stream that is not UTF-8") from None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data_bytes += len(raw)
            if self._data_bytes > MAX_EVENT_BYTES:
                raise UpstreamFailed("the model upstream sent a stream event that is far too long")
            self._data_lines.append(value)
        elif name == "event":
            self._kind = value or "message"
        return None

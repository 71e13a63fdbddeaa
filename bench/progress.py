"""Progress lines: elapsed time first, flushed at once so `make bench` shows them live."""

from __future__ import annotations

import time

_STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", flush=True)


def elapsed() -> float:
    return time.monotonic() - _STARTED

"""Streaming answers that survive their listener."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")
_running: set[asyncio.Task[None]] = set()
_DONE = object()


def completed_even_if_abandoned(events: AsyncIterator[T]) -> AsyncIterator[T]:
    """Run `events` to its end in a task of its own and relay what it yields.

    A streaming client that disconnects cancels the response; without this, that would stop the
    exchange half-way and the bot's reply would never be stored. Here only the relay stops.
    """
    queue: asyncio.Queue[object] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for event in events:
                queue.put_nowait(event)
        except Exception as error:  # handed to the listener, who turns it into an error event
            queue.put_nowait(error)
        finally:
            queue.put_nowait(_DONE)

    task = asyncio.create_task(pump())
    _running.add(task)
    task.add_done_callback(_running.discard)

    async def relay() -> AsyncIterator[T]:
        while (item := await queue.get()) is not _DONE:
            if isinstance(item, Exception):
                raise item
            yield item  # type: ignore[misc]

    return relay()

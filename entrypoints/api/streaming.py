"""Streaming answers that survive their listener, and say they are alive while nothing comes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Final, TypeVar

T = TypeVar("T")
_running: set[asyncio.Task[None]] = set()
_DONE = object()


class Silence:
    """What the relay yields when nothing came for `quiet_after` seconds."""

    __slots__ = ()


SILENCE: Final = Silence()


def completed_even_if_abandoned(
    events: AsyncIterator[T], quiet_after: float | None = None
) -> AsyncIterator[T | Silence]:
    """Run `events` to its end in a task of its own and relay what it yields.

    A streaming client that disconnects cancels the response; without this, that would stop the
    exchange half-way and the bot's reply would never be stored. Here only the relay stops.

    With `quiet_after`, the relay yields `SILENCE` each time that many seconds pass without an
    event (a stream's heartbeat). Only the relay's wait is given up when the timer fires: the
    exchange's task goes on, and an event that arrives meanwhile stays queued for the next turn.
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

    async def relay() -> AsyncIterator[T | Silence]:
        while True:
            if quiet_after is None or not queue.empty():
                item = await queue.get()
            else:
                try:
                    async with asyncio.timeout(quiet_after):
                        item = await queue.get()
                except TimeoutError:
                    yield SILENCE
                    continue
            if item is _DONE:
                return
            if isinstance(item, Exception):
                raise item
            yield item  # type: ignore[misc]

    return relay()

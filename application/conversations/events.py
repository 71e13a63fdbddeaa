"""What posting a message yields, in one order for every caller.

`UserMessageStored`, then any number of `ReplyDelta`s, then `ReplyStored`; or, when the engine
fails, `UserMessageStored`, perhaps some deltas, then `UpstreamFailed` is raised. A replayed
answer (an Idempotency-Key retry) yields the same types: the stored reply arrives as one delta.
Refusals (not found, closed, archived) are raised before the first event.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.conversations import Message


@dataclass(frozen=True)
class UserMessageStored:
    message: Message
    # True when an Idempotency-Key retry replays the first answer: nothing new was stored.
    replayed: bool = False


@dataclass(frozen=True)
class ReplyDelta:
    text: str


@dataclass(frozen=True)
class ReplyStored:
    message: Message


ExchangeEvent = UserMessageStored | ReplyDelta | ReplyStored

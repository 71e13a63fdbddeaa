"""Idempotency-Key: a retry of the same request by the same caller replays its first outcome.

A key is claimed in the transaction that stores the user's message; the attempt holding it
has a lease (longer than any reply may take), so a retry while it answers gets 409, and a retry
after it died takes the key over and answers the message that attempt stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from application.errors import Conflict, UpstreamFailed, UpstreamTimeout
from application.ports import Clock, IdempotencyRecord, UnitOfWork, UnitOfWorkFactory
from domain.conversations import Message

IDEMPOTENCY_TTL = timedelta(hours=24)
# The openai engine's total deadline is 300 s: only an attempt that died loses its key.
REPLY_LEASE = timedelta(minutes=6)
IDEMPOTENCY_RESOURCE = "idempotency_keys"


def fingerprint(conversation_id: UUID, content: str) -> str:
    return hashlib.sha256(f"{conversation_id}\n{content}".encode()).hexdigest()


@dataclass(frozen=True)
class Replay:
    """The first outcome, read inside the transaction, handed out after it."""

    user_message: Message
    reply: Message | None
    failure: UpstreamFailed | None


class IdempotencyKeys:
    def __init__(
        self, *, uow_factory: UnitOfWorkFactory, clock: Clock, lease: timedelta = REPLY_LEASE
    ) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._lease = lease

    async def claim(
        self, uow: UnitOfWork, principal: str, key: str, digest: str
    ) -> IdempotencyRecord | Replay:
        """Inside the transaction that locked the conversation: the key's record, now this
        attempt's (a `user_message_id` on it is the message a dead attempt stored, to answer),
        or the first outcome to replay. Raises Conflict while another live attempt holds it."""
        now = self._clock.now()
        record = await uow.idempotency.get(principal, key)
        if record is None:
            record = IdempotencyRecord(principal, key, digest, None, now)
            await uow.idempotency.add(record)
            return record
        if record.created_at <= now - IDEMPOTENCY_TTL:  # expired: the key is used afresh
            record.fingerprint, record.response, record.created_at = digest, None, now
            record.user_message_id = None
            return record
        if record.fingerprint != digest:
            raise Conflict("This Idempotency-Key was used for a different request.")
        if record.response is not None:
            return await _replay(uow, record.response, record.user_message_id)
        lease_over = record.lease_expires_at is not None and record.lease_expires_at <= now
        if record.user_message_id is None or not lease_over:
            raise Conflict("A request with this Idempotency-Key is in progress.")
        return record

    def hold(self, record: IdempotencyRecord, user_message: Message) -> None:
        record.user_message_id = user_message.id
        record.lease_expires_at = self._clock.now() + self._lease

    @staticmethod
    def answered(record: IdempotencyRecord, user_message: Message, reply: Message) -> None:
        record.response = {"user_message_id": str(user_message.id), "reply_id": str(reply.id)}

    async def record_answer(
        self, uow: UnitOfWork, principal: str, key: str, user_message: Message, reply: Message
    ) -> None:
        record = await uow.idempotency.get(principal, key)
        if record is not None:
            self.answered(record, user_message, reply)

    async def record_failure(self, principal: str, key: str, error: UpstreamFailed) -> None:
        async with self._uow_factory() as uow:
            record = await uow.idempotency.get(principal, key)
            if record is not None:
                record.response = {
                    "error": "timeout" if isinstance(error, UpstreamTimeout) else "failed",
                    "detail": error.detail,
                }
                await uow.commit()

    async def purge_expired(self) -> int:
        """Forget first answers older than the 24 h replay window; returns how many."""
        async with self._uow_factory() as uow:
            purged = await uow.idempotency.purge_older_than(self._clock.now() - IDEMPOTENCY_TTL)
            await uow.commit()
        return purged


async def _replay(
    uow: UnitOfWork, response: dict[str, Any], user_message_id: UUID | None
) -> Replay:
    failure: UpstreamFailed | None = None
    if "error" in response:
        cls = UpstreamTimeout if response["error"] == "timeout" else UpstreamFailed
        failure = cls(str(response.get("detail", "")))
    stored_id = response.get("user_message_id")
    message_id = UUID(stored_id) if stored_id else user_message_id
    user_message = await uow.messages.get(message_id) if message_id else None
    reply = await uow.messages.get(UUID(response["reply_id"])) if "reply_id" in response else None
    if user_message is None or (failure is None and reply is None):
        if failure is not None:
            raise failure
        raise Conflict("The first answer to this Idempotency-Key is no longer stored.")
    return Replay(user_message, reply, failure)

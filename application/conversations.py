"""Conversation use cases: chatting with bots, history, feedback, export, stats.

Posting a message to an engine that calls out (an upstream LLM, or a knowledge index still to
load) is two short transactions around the engine call, never one long one: the first stores the
user's message (so it is kept whatever the engine does), the second stores the reply, and
neither holds a lock or a connection while the engine waits. An engine that can answer without
I/O answers inside the first transaction, which then stores both messages: a lock held for a
fraction of a millisecond more, one transaction fewer. Either way the conversation row is
locked, so concurrent posts get gap-free sequence numbers.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from application.actors import Actor, BotKeyActor, UserActor
from application.bots import manageable_bot
from application.errors import (
    Conflict,
    DuplicateKey,
    Forbidden,
    NotFound,
    UpstreamFailed,
    UpstreamTimeout,
)
from application.pagination import Keyset, Page, clamp_limit, decode_cursor, paginate
from application.ports import (
    Clock,
    ConversationFilter,
    IdempotencyRecord,
    IdGenerator,
    ReplyChunk,
    ReplyDone,
    ReplyEngine,
    ReplyRequest,
    UnitOfWork,
    UnitOfWorkFactory,
)
from domain.bots import Bot, BotStatus, EngineKind
from domain.conversations import (
    MAX_MESSAGE_LENGTH,
    Conversation,
    ConversationStatus,
    Feedback,
    Message,
    MessageRole,
    Rating,
)
from domain.errors import InvalidValue
from domain.text import storable

# What an engine sees of the past: enough for context, and a cost that stays flat as a
# conversation grows.
HISTORY_WINDOW = 20
IDEMPOTENCY_TTL = timedelta(hours=24)
# How long an attempt holds its Idempotency-Key: longer than any reply may take (the openai
# engine's total deadline is 300 s), so only an attempt that died loses the key to a retry.
REPLY_LEASE = timedelta(minutes=6)
MAX_LISTED_BOTS = 100


# --- what posting a message yields ------------------------------------------------------------


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


@dataclass(frozen=True)
class BotStatsView:
    conversations: int
    messages: int
    replies: int
    fallback_rate: float
    feedback_up: int
    feedback_down: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None


@dataclass(frozen=True)
class ConversationExport:
    conversation: Conversation
    bot: Bot
    messages: list[Message]


@dataclass
class _Answered:
    """A reply produced inside the transaction that stores it."""

    pieces: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    failure: UpstreamFailed | None = None
    reply: Message | None = None


async def _reply_text(
    engine: ReplyEngine, request: ReplyRequest, metadata: dict[str, Any]
) -> AsyncIterator[str]:
    """The reply's pieces of text as the engine produces them; its closing metadata go into
    `metadata`."""
    async for produced in engine.reply(request):
        if isinstance(produced, ReplyChunk):
            if produced.text:
                # An upstream may send "\u0000" or a lone surrogate; neither can be stored.
                yield storable(produced.text)
        elif isinstance(produced, ReplyDone):
            metadata.update(produced.metadata)


def _abandoned(record: IdempotencyRecord, fingerprint: str, now: datetime) -> bool:
    """The attempt answering this key stored its message, then died before recording how the
    reply went (its lease ran out): a retry of the same request may take over."""
    return (
        record.response is None
        and record.fingerprint == fingerprint
        and record.user_message_id is not None
        and record.lease_expires_at is not None
        and record.lease_expires_at <= now
    )


# What an idempotency record keeps of a post's first outcome, to replay it.
def _answered_outcome(user_message: Message, reply: Message) -> dict[str, Any]:
    return {"user_message_id": str(user_message.id), "reply_id": str(reply.id)}


def _failed_outcome(failure: UpstreamFailed) -> dict[str, Any]:
    return {
        "error": "timeout" if isinstance(failure, UpstreamTimeout) else "failed",
        "detail": failure.detail,
    }


def _percentile(sorted_values: list[int], fraction: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(0, math.ceil(fraction * len(sorted_values)) - 1)  # nearest-rank
    return float(sorted_values[rank])


class ConversationService:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        engines: Mapping[EngineKind, ReplyEngine],
        clock: Clock,
        ids: IdGenerator,
        monotonic: Callable[[], float] = time.perf_counter,
        reply_lease: timedelta = REPLY_LEASE,
    ) -> None:
        self._uow_factory = uow_factory
        self._engines = engines
        self._clock = clock
        self._ids = ids
        self._monotonic = monotonic
        self._reply_lease = reply_lease

    # --- access rules -------------------------------------------------------------------------

    @staticmethod
    async def _chattable_bot(uow: UnitOfWork, actor: Actor, bot_id: UUID) -> Bot:
        """Users chat with their own bots and published ones; a bot key only with its bot."""
        bot = await uow.bots.get(bot_id)
        if bot is None:
            raise NotFound("No such bot.")
        if isinstance(actor, BotKeyActor):
            if actor.bot_id != bot.id:
                raise NotFound("No such bot.")
        elif not (
            bot.status is BotStatus.PUBLISHED or actor.is_admin or bot.owner_id == actor.user_id
        ):
            raise NotFound("No such bot.")
        return bot

    @staticmethod
    def _holds(actor: Actor, conversation: Conversation) -> bool:
        if isinstance(actor, BotKeyActor):
            return conversation.bot_id == actor.bot_id and conversation.user_id is None
        return conversation.user_id == actor.user_id

    async def _readable(
        self, uow: UnitOfWork, actor: Actor, conversation_id: UUID, *, lock: bool = False
    ) -> Conversation:
        """Its holder, the bot's owner and admins may read; everyone else gets NotFound."""
        getter = uow.conversations.get_for_update if lock else uow.conversations.get
        conversation = await getter(conversation_id)
        if conversation is None:
            raise NotFound("No such conversation.")
        if self._holds(actor, conversation):
            return conversation
        if isinstance(actor, UserActor):
            if actor.is_admin:
                return conversation
            bot = await uow.bots.get(conversation.bot_id)
            if bot is not None and bot.owner_id == actor.user_id:
                return conversation
        raise NotFound("No such conversation.")

    async def _writable(
        self, uow: UnitOfWork, actor: Actor, conversation_id: UUID, *, lock: bool = False
    ) -> Conversation:
        """Only the holder writes; the bot's owner reads other people's conversations only."""
        conversation = await self._readable(uow, actor, conversation_id, lock=lock)
        if not self._holds(actor, conversation):
            raise Forbidden("Only the person who holds this conversation may change it.")
        return conversation

    # --- conversations ------------------------------------------------------------------------

    async def start_conversation(
        self,
        actor: Actor,
        bot_id: UUID,
        *,
        title: str = "",
        external_user_id: str | None = None,
        with_greeting: bool = True,
    ) -> Conversation:
        """Open a conversation; the bot's greeting, if any, is its first message. A bot key
        tags it with the `external_user_id` of the person it serves."""
        async with self._uow_factory() as uow:
            bot = await self._chattable_bot(uow, actor, bot_id)
            bot.ensure_accepts_messages()
            now = self._clock.now()
            conversation = Conversation.start(
                id=self._ids.new_id(),
                bot_id=bot.id,
                now=now,
                user_id=actor.user_id if isinstance(actor, UserActor) else None,
                external_user_id=external_user_id,
                title=title,
            )
            await uow.conversations.add(conversation)
            if with_greeting and bot.greeting.strip():
                greeting = conversation.append(
                    message_id=self._ids.new_id(),
                    role=MessageRole.ASSISTANT,
                    content=bot.greeting,
                    now=now,
                    metadata={"engine": "greeting", "greeting": True},
                )
                await uow.messages.add(greeting)
            await uow.commit()
        return conversation

    async def list_conversations(
        self,
        actor: Actor,
        *,
        bot_id: UUID | None = None,
        status: ConversationStatus | None = None,
        external_user_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Conversation]:
        """The caller's conversations, newest activity first. For a bot key: the conversations
        it opened for its bot, optionally for one `external_user_id`."""
        if isinstance(actor, BotKeyActor):
            if bot_id is not None and bot_id != actor.bot_id:
                return Page([], None)
            flt = ConversationFilter(
                bot_id=actor.bot_id,
                only_key_opened=True,
                status=status,
                external_user_id=external_user_id,
            )
        else:
            flt = ConversationFilter(
                user_id=actor.user_id,
                bot_id=bot_id,
                status=status,
                external_user_id=external_user_id,
            )
        return await self._page(flt, limit, cursor)

    async def list_bot_conversations(
        self,
        actor: Actor,
        bot_id: UUID,
        *,
        status: ConversationStatus | None = None,
        external_user_id: str | None = None,
        with_down_feedback: bool = False,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Conversation]:
        """The bot's owner (and admins): every conversation with the bot, whoever held it."""
        async with self._uow_factory(read_only=True) as uow:
            await manageable_bot(uow, actor, bot_id)
        flt = ConversationFilter(
            bot_id=bot_id,
            status=status,
            external_user_id=external_user_id,
            with_down_feedback=with_down_feedback,
        )
        return await self._page(flt, limit, cursor)

    async def _page(
        self, flt: ConversationFilter, limit: int | None, cursor: str | None
    ) -> Page[Conversation]:
        size = clamp_limit(limit)
        async with self._uow_factory(read_only=True) as uow:
            rows = await uow.conversations.list_page(
                flt, after=decode_cursor(cursor), limit=size + 1
            )
        return paginate(rows, size, lambda c: Keyset(c.last_message_at, c.id))

    async def get_conversation(self, actor: Actor, conversation_id: UUID) -> Conversation:
        async with self._uow_factory(read_only=True) as uow:
            return await self._readable(uow, actor, conversation_id)

    async def rename_conversation(
        self, actor: Actor, conversation_id: UUID, title: str
    ) -> Conversation:
        async with self._uow_factory() as uow:
            conversation = await self._writable(uow, actor, conversation_id, lock=True)
            conversation.rename(title, self._clock.now())
            await uow.commit()
        return conversation

    async def close_conversation(self, actor: Actor, conversation_id: UUID) -> Conversation:
        """No further messages (409 after)."""
        async with self._uow_factory() as uow:
            conversation = await self._writable(uow, actor, conversation_id, lock=True)
            conversation.close(self._clock.now())
            await uow.commit()
        return conversation

    async def delete_conversation(self, actor: Actor, conversation_id: UUID) -> None:
        async with self._uow_factory() as uow:
            conversation = await self._readable(uow, actor, conversation_id, lock=True)
            admin = isinstance(actor, UserActor) and actor.is_admin
            if not (self._holds(actor, conversation) or admin):
                raise Forbidden("Only the person who holds this conversation may delete it.")
            await uow.conversations.delete(conversation)
            await uow.commit()

    # --- messages -----------------------------------------------------------------------------

    async def list_messages(
        self,
        actor: Actor,
        conversation_id: UUID,
        *,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Message]:
        """History, oldest first."""
        size = clamp_limit(limit)
        after = decode_cursor(cursor)
        after_seq = int(after.value) if after is not None and isinstance(after.value, int) else 0
        async with self._uow_factory(read_only=True) as uow:
            await self._readable(uow, actor, conversation_id)
            rows = await uow.messages.list_page(
                conversation_id, after_seq=after_seq, limit=size + 1
            )
        return paginate(rows, size, lambda m: Keyset(m.seq, m.id))

    async def post_message(
        self,
        actor: Actor,
        conversation_id: UUID,
        content: str,
        *,
        idempotency_key: str | None = None,
        prior_turns: Sequence[tuple[MessageRole, str]] = (),
    ) -> AsyncIterator[ExchangeEvent]:
        """Store the user's message, stream the bot's reply, store the reply.

        Yields `UserMessageStored`, then `ReplyDelta`s, then `ReplyStored`. If the engine fails,
        the user's message stays stored, `UpstreamFailed`/`UpstreamTimeout` is raised, and the
        conversation stays usable. With an `idempotency_key`, a retry of the same request by the
        same caller within 24 h replays the first outcome and stores nothing new; while the
        first attempt is answering, a retry gets 409, and once that attempt's lease has run out
        (it died), the retry answers the user message the first attempt stored.

        An engine that can answer without I/O (a knowledge bot whose index is loaded) answers
        inside the first transaction, which stores both messages: one transaction instead of
        two, and the events are the same.
        """
        principal = actor.principal
        fingerprint = hashlib.sha256(f"{conversation_id}\n{content}".encode()).hexdigest()
        record: IdempotencyRecord | None = None
        answered: _Answered | None = None
        async with self._uow_factory() as uow:
            conversation = await self._writable(uow, actor, conversation_id, lock=True)
            now = self._clock.now()
            if idempotency_key is not None:
                record = await uow.idempotency.get(principal, idempotency_key)
                if record is not None and record.created_at <= now - IDEMPOTENCY_TTL:
                    # Expired: the key may be used afresh.
                    record.fingerprint, record.response = fingerprint, None
                    record.created_at, record.user_message_id = now, None
                elif record is not None and not _abandoned(record, fingerprint, now):
                    async for event in self._replay(uow, record, fingerprint):
                        yield event
                    return
            resumed = record is not None and record.user_message_id is not None
            if not resumed:
                conversation.ensure_open()
            bot = await uow.bots.get(conversation.bot_id)
            if bot is None:
                raise NotFound("No such conversation.")
            bot.ensure_accepts_messages()
            engine = self._engines[bot.engine]
            if resumed:
                assert record is not None
                # The attempt that stored this message died: answer it, store nothing twice.
                user_message, history = await self._abandoned_message(uow, record, engine)
            else:
                history = (
                    await uow.messages.recent(conversation.id, HISTORY_WINDOW)
                    if engine.reads_history
                    else []
                )
                user_message = conversation.append(
                    message_id=self._ids.new_id(), role=MessageRole.USER, content=content, now=now
                )
                await uow.messages.add(user_message)
            if idempotency_key is not None and record is None:
                record = IdempotencyRecord(principal, idempotency_key, fingerprint, None, now)
                await uow.idempotency.add(record)
            if record is not None:
                record.user_message_id = user_message.id
                record.lease_expires_at = now + self._reply_lease
            if prior_turns:  # context the caller holds (the OpenAI surface), not stored here
                history = [*self._transient(conversation.id, prior_turns), *history]
                history = history[-HISTORY_WINDOW:]
            request = ReplyRequest(bot, history, content)
            if engine.answers_without_io(bot):
                answered = await self._answer(engine, request)
                if answered.failure is None:
                    answered.reply = conversation.append(
                        message_id=self._ids.new_id(),
                        role=MessageRole.ASSISTANT,
                        content="".join(answered.pieces),
                        now=self._clock.now(),
                        metadata=answered.metadata,
                    )
                    await uow.messages.add(answered.reply)
                    if record is not None:
                        record.response = _answered_outcome(user_message, answered.reply)
                elif record is not None:
                    record.response = _failed_outcome(answered.failure)
            try:
                await uow.commit()
            except DuplicateKey as error:  # a concurrent retry with the same key won
                raise Conflict("A request with this Idempotency-Key is in progress.") from error
        yield UserMessageStored(user_message)

        if answered is not None:
            for piece in answered.pieces:
                yield ReplyDelta(piece)
            if answered.reply is None:
                raise answered.failure or UpstreamFailed("The reply was not produced.")
            yield ReplyStored(answered.reply)
            return
        started = self._monotonic()
        pieces: list[str] = []
        metadata: dict[str, Any] = {}
        try:
            async for piece in _reply_text(engine, request, metadata):
                pieces.append(piece)
                yield ReplyDelta(piece)
        except UpstreamFailed as error:
            await self._remember_failure(principal, idempotency_key, error)
            raise
        reply = await self._store_reply(
            conversation_id,
            "".join(pieces),
            self._reply_metadata(metadata, started, bot),
            principal,
            idempotency_key,
            user_message,
        )
        yield ReplyStored(reply)

    @staticmethod
    async def _abandoned_message(
        uow: UnitOfWork, record: IdempotencyRecord, engine: ReplyEngine
    ) -> tuple[Message, list[Message]]:
        """The user message a dead attempt stored, and the history that preceded it."""
        assert record.user_message_id is not None
        message = await uow.messages.get(record.user_message_id)
        if message is None:
            raise Conflict("The first answer to this Idempotency-Key is no longer stored.")
        history: list[Message] = []
        if engine.reads_history:
            recent = await uow.messages.recent(message.conversation_id, HISTORY_WINDOW + 64)
            history = [m for m in recent if m.seq < message.seq][-HISTORY_WINDOW:]
        return message, history

    async def _answer(self, engine: ReplyEngine, request: ReplyRequest) -> _Answered:
        """The whole reply of an engine that answers without I/O, or how it failed."""
        started = self._monotonic()
        answered = _Answered()
        try:
            async for piece in _reply_text(engine, request, answered.metadata):
                answered.pieces.append(piece)
        except UpstreamFailed as error:
            answered.failure = error
        answered.metadata = self._reply_metadata(answered.metadata, started, request.bot)
        return answered

    def _reply_metadata(self, metadata: dict[str, Any], started: float, bot: Bot) -> dict[str, Any]:
        metadata["latency_ms"] = round((self._monotonic() - started) * 1000)
        metadata.setdefault("engine", bot.engine.value)
        return metadata

    def _transient(
        self, conversation_id: UUID, turns: Sequence[tuple[MessageRole, str]]
    ) -> list[Message]:
        now = self._clock.now()
        return [
            Message(self._ids.new_id(), conversation_id, 0, role, content, {}, now)
            for role, content in turns
        ]

    # --- the OpenAI-compatible surface ------------------------------------------------------

    async def chattable_bots(self, actor: Actor) -> list[Bot]:
        """The bots this caller may chat with: published ones and the user's own drafts; for
        a bot key, its bot."""
        async with self._uow_factory(read_only=True) as uow:
            if isinstance(actor, BotKeyActor):
                bot = await uow.bots.get(actor.bot_id)
                return [bot] if bot is not None and bot.status is not BotStatus.ARCHIVED else []
            return await uow.bots.list_chattable(actor.user_id, limit=MAX_LISTED_BOTS)

    async def complete_chat(
        self,
        actor: Actor,
        bot_id: UUID,
        turns: Sequence[tuple[MessageRole, str]],
        *,
        conversation_id: UUID | None = None,
        external_user_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[UUID, AsyncIterator[ExchangeEvent]]:
        """A chat-completion call: the last turn is the new user message.

        With `conversation_id`, it is posted into that stored conversation (whose stored
        history the engine sees; earlier turns of the call are not stored again). Without,
        a new conversation is opened for the call: earlier turns are given to the engine as
        context, and the new message and the reply are stored.
        """
        if not turns or turns[-1][0] is not MessageRole.USER or not turns[-1][1].strip():
            raise InvalidValue("messages", "the last message must be a non-empty user message")
        if len(turns[-1][1]) > MAX_MESSAGE_LENGTH:  # refused before a conversation is opened
            raise InvalidValue(
                "messages", f"the last message exceeds {MAX_MESSAGE_LENGTH} characters"
            )
        if conversation_id is None:
            conversation = await self.start_conversation(
                actor,
                bot_id,
                title=turns[-1][1].strip()[:80],
                external_user_id=external_user_id,
                with_greeting=False,
            )
            prior = turns[:-1]
        else:
            conversation = await self.get_conversation(actor, conversation_id)
            if conversation.bot_id != bot_id:
                raise NotFound("No such conversation with this bot.")
            prior = ()
        events = self.post_message(
            actor,
            conversation.id,
            turns[-1][1],
            idempotency_key=idempotency_key,
            prior_turns=prior,
        )
        return conversation.id, events

    async def _store_reply(
        self,
        conversation_id: UUID,
        text: str,
        metadata: dict[str, Any],
        principal: str,
        idempotency_key: str | None,
        user_message: Message,
    ) -> Message:
        async with self._uow_factory() as uow:
            conversation = await uow.conversations.get_for_update(conversation_id)
            if conversation is None:  # deleted while the engine was answering
                raise NotFound("The conversation was deleted.")
            # A conversation closed meanwhile still gets the reply to a message it accepted.
            was_closed = not conversation.is_open
            if was_closed:
                conversation.status = ConversationStatus.OPEN
            reply = conversation.append(
                message_id=self._ids.new_id(),
                role=MessageRole.ASSISTANT,
                content=text,
                now=self._clock.now(),
                metadata=metadata,
            )
            if was_closed:
                conversation.status = ConversationStatus.CLOSED
            await uow.messages.add(reply)
            if idempotency_key is not None:
                record = await uow.idempotency.get(principal, idempotency_key)
                if record is not None:
                    record.response = _answered_outcome(user_message, reply)
            await uow.commit()
        return reply

    async def _remember_failure(
        self, principal: str, idempotency_key: str | None, error: UpstreamFailed
    ) -> None:
        if idempotency_key is None:
            return
        async with self._uow_factory() as uow:
            record = await uow.idempotency.get(principal, idempotency_key)
            if record is not None:
                record.response = _failed_outcome(error)
                await uow.commit()

    @staticmethod
    async def _replay(
        uow: UnitOfWork, record: IdempotencyRecord, fingerprint: str
    ) -> AsyncIterator[ExchangeEvent]:
        if record.fingerprint != fingerprint:
            raise Conflict("This Idempotency-Key was used for a different request.")
        response = record.response
        if response is None:
            raise Conflict("A request with this Idempotency-Key is in progress.")
        if "error" in response:
            cls = UpstreamTimeout if response["error"] == "timeout" else UpstreamFailed
            raise cls(str(response.get("detail", "")))
        user_message = await uow.messages.get(UUID(response["user_message_id"]))
        reply = await uow.messages.get(UUID(response["reply_id"]))
        if user_message is None or reply is None:
            raise Conflict("The first answer to this Idempotency-Key is no longer stored.")
        yield UserMessageStored(user_message, replayed=True)
        yield ReplyStored(reply)

    async def purge_expired_idempotency_keys(self) -> int:
        """Forget first answers older than the 24 h replay window; returns how many."""
        async with self._uow_factory() as uow:
            purged = await uow.idempotency.purge_older_than(self._clock.now() - IDEMPOTENCY_TTL)
            await uow.commit()
        return purged

    # --- feedback, export, stats --------------------------------------------------------------

    async def rate_reply(
        self, actor: Actor, message_id: UUID, rating: Rating, comment: str = ""
    ) -> Feedback:
        """Rate a reply up or down; rating again replaces the earlier rating."""
        async with self._uow_factory() as uow:
            message = await uow.messages.get(message_id)
            if message is None:
                raise NotFound("No such message.")
            await self._writable(uow, actor, message.conversation_id)
            if message.role is not MessageRole.ASSISTANT:
                raise Conflict("Only the bot's replies can be rated.")
            now = self._clock.now()
            feedback = await uow.feedback.get(message_id)
            if feedback is None:
                feedback = Feedback(
                    message_id=message.id,
                    conversation_id=message.conversation_id,
                    rating=rating,
                    comment=comment,
                    created_at=now,
                    updated_at=now,
                )
                await uow.feedback.add(feedback)
            else:
                feedback.change(rating, comment, now)
            try:
                await uow.commit()
            except DuplicateKey as error:
                raise Conflict("The reply was rated concurrently; try again.") from error
        return feedback

    async def export_conversation(self, actor: Actor, conversation_id: UUID) -> ConversationExport:
        """The whole conversation with every message, for download."""
        async with self._uow_factory(read_only=True) as uow:
            conversation = await self._readable(uow, actor, conversation_id)
            bot = await uow.bots.get(conversation.bot_id)
            if bot is None:
                raise NotFound("No such conversation.")
            messages: list[Message] = []
            while True:
                after = messages[-1].seq if messages else 0
                batch = await uow.messages.list_page(conversation.id, after_seq=after, limit=500)
                messages.extend(batch)
                if len(batch) < 500:
                    break
        return ConversationExport(conversation, bot, messages)

    async def bot_stats(self, actor: Actor, bot_id: UUID) -> BotStatsView:
        """Conversations, messages, fallback rate, feedback and reply latency percentiles."""
        async with self._uow_factory(read_only=True) as uow:
            await manageable_bot(uow, actor, bot_id)
            stats = await uow.stats.bot_stats(bot_id)
        latencies = sorted(stats.reply_latencies_ms)
        return BotStatsView(
            conversations=stats.conversations,
            messages=stats.messages,
            replies=stats.replies,
            fallback_rate=round(stats.fallbacks / stats.replies, 4) if stats.replies else 0.0,
            feedback_up=stats.feedback_up,
            feedback_down=stats.feedback_down,
            latency_p50_ms=_percentile(latencies, 0.50),
            latency_p95_ms=_percentile(latencies, 0.95),
        )

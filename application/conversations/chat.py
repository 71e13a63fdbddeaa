"""Chatting: a message in, the bot's reply out, both stored.

A post is at most two short transactions around the engine, never one long one. The first
locks the conversation, stores the user's message (kept whatever the engine does) and claims
the Idempotency-Key; an engine that can answer now, without I/O, answers inside it, and that
one transaction stores both messages. Otherwise the engine answers with no transaction, lock or
connection held, and a second transaction stores the reply. Events are handed to the caller
only between transactions, never while one is open.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from application.access import writable_conversation
from application.actors import Actor, BotKeyActor
from application.conversations.events import (
    ExchangeEvent,
    ReplyDelta,
    ReplyStored,
    UserMessageStored,
)
from application.conversations.idempotency import (
    IDEMPOTENCY_RESOURCE,
    IdempotencyKeys,
    Replay,
    fingerprint,
)
from application.conversations.threads import Threads
from application.errors import Conflict, DuplicateKey, NotFound, UpstreamFailed
from application.ports import (
    Clock,
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
from domain.conversations import MAX_MESSAGE_LENGTH, Conversation, Message, MessageRole
from domain.errors import InvalidValue
from domain.text import storable

# What an engine sees of the past: enough for context, and a cost that stays flat as a
# conversation grows.
HISTORY_WINDOW = 20
MAX_LISTED_BOTS = 100


@dataclass(frozen=True)
class _Accepted:
    """The message the first transaction stored (or a dead attempt had stored) to answer: with
    its reply when the engine answered at once, else the history the engine is to see."""

    user_message: Message
    bot: Bot
    reply: Message | None
    history: list[Message]


class Chat:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        engines: Mapping[EngineKind, ReplyEngine],
        clock: Clock,
        ids: IdGenerator,
        keys: IdempotencyKeys,
        threads: Threads,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._uow_factory = uow_factory
        self._engines = engines
        self._clock = clock
        self._ids = ids
        self._keys = keys
        self._threads = threads
        self._monotonic = monotonic

    async def post_message(
        self,
        actor: Actor,
        conversation_id: UUID,
        content: str,
        *,
        idempotency_key: str | None = None,
        prior_turns: Sequence[tuple[MessageRole, str]] = (),
    ) -> AsyncIterator[ExchangeEvent]:
        """Store the user's message, stream the bot's reply, store the reply (events.py).

        If the engine fails, the user's message stays stored, `UpstreamFailed` is raised and
        the conversation stays usable. With an `idempotency_key`, a retry of the same request
        by the same caller within 24 h replays the first outcome and stores nothing new.
        `prior_turns` is context the caller holds (the OpenAI surface), given to the engine and
        not stored.
        """
        accepted = await self._accept(actor, conversation_id, content, idempotency_key)
        if isinstance(accepted, Replay):
            yield UserMessageStored(accepted.user_message, replayed=True)
            if accepted.failure is not None or accepted.reply is None:
                raise accepted.failure or UpstreamFailed("The reply was not produced.")
            for event in _stored_reply(accepted.reply):
                yield event
            return
        user_message, bot = accepted.user_message, accepted.bot
        yield UserMessageStored(user_message)
        if accepted.reply is not None:
            for event in _stored_reply(accepted.reply):
                yield event
            return

        history = [*self._transient(conversation_id, prior_turns), *accepted.history]
        request = ReplyRequest(bot, history[-HISTORY_WINDOW:], user_message.content)
        started = self._monotonic()
        pieces: list[str] = []
        metadata: dict[str, Any] = {}
        try:
            async for piece in _reply_text(self._engines[bot.engine], request, metadata):
                pieces.append(piece)
                yield ReplyDelta(piece)
        except UpstreamFailed as error:
            if idempotency_key is not None:
                await self._keys.record_failure(actor.principal, idempotency_key, error)
            raise
        reply = await self._store_reply(
            actor.principal,
            idempotency_key,
            user_message,
            "".join(pieces),
            self._metadata(metadata, started, bot),
        )
        yield ReplyStored(reply)

    async def _accept(
        self, actor: Actor, conversation_id: UUID, content: str, key: str | None
    ) -> _Accepted | Replay:
        async with self._uow_factory() as uow:
            conversation = await writable_conversation(uow, actor, conversation_id, lock=True)
            claim: IdempotencyRecord | None = None
            if key is not None:
                claimed = await self._keys.claim(
                    uow, actor.principal, key, fingerprint(conversation_id, content)
                )
                if isinstance(claimed, Replay):
                    return claimed
                claim = claimed
            bot = await uow.bots.get(conversation.bot_id)
            if bot is None:
                raise NotFound("No such conversation.")
            bot.ensure_accepts_messages()
            resumed = claim.user_message_id if claim is not None else None
            user_message = await self._user_message(uow, conversation, content, resumed)
            started = self._monotonic()
            answer = self._engines[bot.engine].answer_now(bot, user_message.content)
            appended = [] if resumed is not None else [user_message]
            reply: Message | None = None
            history: list[Message] = []
            if answer is not None:
                reply = conversation.record_reply(
                    answering=user_message,
                    message_id=self._ids.new_id(),
                    content=storable(answer.text),
                    now=self._clock.now(),
                    metadata=self._metadata(dict(answer.metadata), started, bot),
                )
                appended.append(reply)
            else:
                history = await self._history_before(uow, conversation, user_message)
            await uow.conversation_log.append(conversation, appended)
            if claim is not None:
                self._keys.hold(claim, user_message)
                if reply is not None:
                    self._keys.answered(claim, user_message, reply)
            try:
                await uow.commit()
            except DuplicateKey as error:
                if error.resource == IDEMPOTENCY_RESOURCE:  # a concurrent first attempt won
                    raise Conflict("A request with this Idempotency-Key is in progress.") from error
                raise
        return _Accepted(user_message, bot, reply, history)

    async def _user_message(
        self, uow: UnitOfWork, conversation: Conversation, content: str, resumed: UUID | None
    ) -> Message:
        """The message to answer: a new one, or the one a dead attempt stored."""
        if resumed is not None:
            stored = await uow.messages.get(resumed)
            if stored is None:
                raise Conflict("The first answer to this Idempotency-Key is no longer stored.")
            return stored
        return conversation.append(
            message_id=self._ids.new_id(),
            role=MessageRole.USER,
            content=content,
            now=self._clock.now(),
        )

    @staticmethod
    async def _history_before(
        uow: UnitOfWork, conversation: Conversation, message: Message
    ) -> list[Message]:
        recent = await uow.messages.recent(conversation.id, HISTORY_WINDOW + 1)
        return [m for m in recent if m.seq < message.seq][-HISTORY_WINDOW:]

    async def _store_reply(
        self,
        principal: str,
        key: str | None,
        user_message: Message,
        text: str,
        metadata: dict[str, Any],
    ) -> Message:
        async with self._uow_factory() as uow:
            conversation = await uow.conversation_log.lock(user_message.conversation_id)
            if conversation is None:
                raise NotFound("The conversation was deleted while the bot was answering.")
            reply = conversation.record_reply(
                answering=user_message,
                message_id=self._ids.new_id(),
                content=text,
                now=self._clock.now(),
                metadata=metadata,
            )
            await uow.conversation_log.append(conversation, [reply])
            if key is not None:
                await self._keys.record_answer(uow, principal, key, user_message, reply)
            await uow.commit()
        return reply

    def _metadata(self, metadata: dict[str, Any], started: float, bot: Bot) -> dict[str, Any]:
        metadata["latency_ms"] = round((self._monotonic() - started) * 1000)
        metadata.setdefault("engine", bot.engine.value)
        # Which settings and which knowledge produced this reply, for the owner's log.
        metadata["version"] = bot.version
        metadata["knowledge_revision"] = bot.knowledge_revision
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
            conversation = await self._threads.start_conversation(
                actor,
                bot_id,
                title=turns[-1][1].strip()[:80],
                external_user_id=external_user_id,
                with_greeting=False,
            )
            prior = turns[:-1]
        else:
            conversation = await self._threads.get_conversation(actor, conversation_id)
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


def _stored_reply(reply: Message) -> list[ExchangeEvent]:
    """A reply already whole and stored, as the events a streamed one ends with."""
    delta: list[ExchangeEvent] = [ReplyDelta(reply.content)] if reply.content else []
    return [*delta, ReplyStored(reply)]


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

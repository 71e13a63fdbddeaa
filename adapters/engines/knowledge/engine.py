"""`KnowledgeEngine`: the `ReplyEngine` and `KnowledgeRetriever` ports over a bot's knowledge.

Apart from the index (`index`) because this part is about serving, not retrieval: small talk
before retrieval, the bot's threshold and fallback, streaming an answer in word groups, and the
cache of indexes per knowledge revision (built once, off the event loop when large).
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from uuid import UUID
from weakref import WeakValueDictionary

from adapters.engines.knowledge.config import DEFAULT_THRESHOLD, valid_threshold
from adapters.engines.knowledge.index import KnowledgeIndex, KnowledgeMatch
from adapters.engines.knowledge.text import (
    DEFAULT_SMALL_TALK_REPLIES,
    SmallTalk,
    small_talk_kind,
    word_group_chunks,
)
from application.ports import (
    Reply,
    ReplyChunk,
    ReplyDone,
    ReplyEvent,
    ReplyRequest,
    RetrievedEntry,
)
from domain.bots import Bot, KnowledgeEntry

logger = logging.getLogger(__name__)

ENGINE_NAME = "knowledge"

CACHE_CAPACITY = 256
# Builds cost ~40 us per document (bm25s indexes in Python): from this many documents (~4 ms)
# they run in a worker thread; smaller ones are cheaper inline than the thread hand-off.
OFF_LOOP_BUILD_MIN_DOCUMENTS = 100

# Small talk is recognised by rule, not by retrieval: the reply is certain to fit.
SMALL_TALK_CONFIDENCE = 1.0


@dataclass(frozen=True)
class _CachedIndex:
    knowledge_revision: int
    index: KnowledgeIndex


@dataclass(frozen=True)
class _Answer:
    text: str
    confidence: float
    fallback: bool
    match: KnowledgeMatch | None


EntriesLoader = Callable[[UUID], Awaitable[list[KnowledgeEntry]]]


class KnowledgeEngine:
    """`ReplyEngine` and `KnowledgeRetriever` over a bot's knowledge entries.

    `load_entries(bot_id)` returns all of a bot's entries; it is called only when the bot's
    `knowledge_revision` is newer than the cached index (or the bot fell out of the LRU).
    """

    def __init__(
        self,
        load_entries: EntriesLoader,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        cache_capacity: int = CACHE_CAPACITY,
    ) -> None:
        if cache_capacity < 1:
            raise ValueError("cache_capacity must be at least 1")
        self._load_entries = load_entries
        self._default_threshold = valid_threshold(threshold)
        self._cache_capacity = cache_capacity
        self._cache: OrderedDict[UUID, _CachedIndex] = OrderedDict()
        # One lock per bot while someone builds or waits for its index; unused locks vanish.
        self._build_locks: WeakValueDictionary[UUID, asyncio.Lock] = WeakValueDictionary()

    # -- the ports --

    async def retrieve(self, bot: Bot, query: str, limit: int) -> list[RetrievedEntry]:
        """Up to `limit` entries sharing words with `query`, best first, scored with the same
        calibrated confidence as replies (callers wanting only solid context filter on it)."""
        index = await self.index_for(bot)
        return [
            RetrievedEntry(
                entry_id=match.entry_id,
                question=match.question,
                answer=match.answer,
                score=match.confidence,
            )
            for match in index.search(query, limit)
        ]

    def answer_now(self, bot: Bot, message: str) -> Reply | None:
        """The reply when the bot's index for its revision is loaded (no I/O); else None."""
        index = self._cached(bot)
        return None if index is None else self._reply_from(self._answer(bot, index, message))

    async def reply(self, request: ReplyRequest) -> AsyncIterator[ReplyEvent]:
        index = await self.index_for(request.bot)
        reply = self._reply_from(self._answer(request.bot, index, request.message))
        for piece in word_group_chunks(reply.text):
            yield ReplyChunk(text=piece)
        yield ReplyDone(metadata=reply.metadata)

    @staticmethod
    def _reply_from(answer: _Answer) -> Reply:
        return Reply(
            answer.text,
            {
                "engine": ENGINE_NAME,
                "confidence": round(answer.confidence, 4),
                "fallback": answer.fallback,
                "sources": [] if answer.match is None else [str(answer.match.entry_id)],
                "matched_question": None if answer.match is None else answer.match.question,
            },
        )

    # -- answering --

    def threshold_for(self, bot: Bot) -> float:
        """The bot's own threshold when its settings hold a valid one, else the default."""
        raw = bot.engine_config.get("threshold")
        if raw is None:
            return self._default_threshold
        try:
            return valid_threshold(raw)
        except ValueError:
            # Settings are validated when saved; a bad stored value must not break chatting.
            logger.warning("bot %s has an invalid knowledge threshold %r", bot.id, raw)
            return self._default_threshold

    def _answer(self, bot: Bot, index: KnowledgeIndex, message: str) -> _Answer:
        kind = small_talk_kind(message)
        if kind is not None:
            taught = index.small_talk_match(kind, message)
            if taught is not None:
                return _Answer(taught.answer, SMALL_TALK_CONFIDENCE, False, taught)
            text = DEFAULT_SMALL_TALK_REPLIES[kind]
            if kind is SmallTalk.GREETING and bot.greeting.strip():
                text = bot.greeting
            return _Answer(text, SMALL_TALK_CONFIDENCE, False, None)
        matches = index.search(message, limit=1)
        best = matches[0] if matches else None
        confidence = best.confidence if best is not None else 0.0
        if best is None or confidence < self.threshold_for(bot):
            return _Answer(bot.fallback_message, confidence, True, None)
        return _Answer(best.answer, confidence, False, best)

    # -- the index cache --

    async def index_for(self, bot: Bot) -> KnowledgeIndex:
        """The bot's index for its current knowledge revision, built at most once per revision.

        A cached index built for a newer revision also serves requests that read an older bot
        row: its knowledge is at least as fresh, and rebuilding backwards would thrash.
        """
        cached = self._cached(bot)
        if cached is not None:
            return cached
        lock = self._build_locks.get(bot.id)
        if lock is None:
            lock = self._build_locks[bot.id] = asyncio.Lock()
        async with lock:
            cached = self._cached(bot)  # built while this request waited for the lock
            if cached is not None:
                return cached
            entries = await self._load_entries(bot.id)
            documents = sum(1 + len(entry.examples) for entry in entries)
            if documents >= OFF_LOOP_BUILD_MIN_DOCUMENTS:
                index = await asyncio.to_thread(KnowledgeIndex, entries)
            else:
                index = KnowledgeIndex(entries)
            self._cache[bot.id] = _CachedIndex(bot.knowledge_revision, index)
            self._cache.move_to_end(bot.id)
            while len(self._cache) > self._cache_capacity:
                self._cache.popitem(last=False)
            return index

    def _cached(self, bot: Bot) -> KnowledgeIndex | None:
        cached = self._cache.get(bot.id)
        if cached is None or cached.knowledge_revision < bot.knowledge_revision:
            return None
        self._cache.move_to_end(bot.id)
        return cached.index

"""The embedded `knowledge` engine: answers from a bot's own knowledge entries, no model needed.

How a question is answered
--------------------------
1. Small talk first. A message that is nothing but a greeting, thanks or goodbye ("hi", "thank
   you so much", "see you") gets a built-in reply (the bot's greeting for hello), unless the
   owner taught an entry for that kind of small talk (an entry with "hello" among its question
   or examples answers greetings). "hi, how do I reset my password?" is a question.
2. Retrieval over two BM25 views of the knowledge (bm25s weights over stemmed terms):
   - the *example* view: every question and example is its own document; an entry scores the
     mean of its best few documents (a k-nearest-neighbour vote over ~5 % of its documents, 1
     to 5), so with many examples one lucky example does not win alone, and with few the best
     one decides;
   - the *profile* view: one document per entry with all its texts, which behaves like a class
     centroid and rescues paraphrases whose words are spread over several examples.
   Each view's score is divided by the query's own weight in that view (the sum of the idf of
   its terms; an unknown word counts at the highest idf, as it is something the knowledge does
   not cover, unless it is a function word such as "the"), so it reads as "the share of what
   the question says that this entry matches", independent of query length and corpus size.
   The two shares are mixed (`PROFILE_WEIGHT`) into the entry's *match strength* in [0, 1].
3. Calibration. Confidence is a logistic curve in log-strength fitted offline on CLINC150's
   validation split (`python -m bench.answer_quality --fit-calibration`): an estimate of the
   probability that the best entry is the right answer. Its expected calibration error is 0.013
   on that knowledge and 0.03 when the same intents keep only 3 or 10 examples each, so one
   threshold means the same for rich and thin knowledge bases. Below the threshold (the bot's
   `engine_config["threshold"]`, else `DEFAULT_THRESHOLD`) the bot's fallback message answers.
   A margin between the two best entries was tried as well and left out: it barely helped and
   would punish knowledge bases with near-duplicate entries.

Measured on CLINC150 val (in-scope accuracy at 60 % out-of-scope recall): the example view alone
0.843, with the profile view 0.887; stemming +0.7 points; removing stop words -1.5 points;
character trigrams +0.5 points for twice the index size and query time, so they are left out.

Indexes are built once per (bot, knowledge revision), kept in a bounded LRU, and built off the
event loop when large. A query is numpy over precomputed BM25 weights (about 1 ms at 50,000
entries), so it runs inline.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID
from weakref import WeakValueDictionary

import bm25s
import numpy as np
import numpy.typing as npt

from adapters.engines.text import (
    DEFAULT_SMALL_TALK_REPLIES,
    FUNCTION_WORDS,
    SmallTalk,
    small_talk_kind,
    terms,
    word_group_chunks,
)
from application.ports import ReplyChunk, ReplyDone, ReplyEvent, ReplyRequest, RetrievedEntry
from domain.bots import Bot, KnowledgeEntry

logger = logging.getLogger(__name__)
# bm25s sets its own logger to DEBUG at import and logs routine steps; keep them out of our logs.
logging.getLogger("bm25s").setLevel(logging.WARNING)

ENGINE_NAME = "knowledge"

# Chosen by `python -m bench.answer_quality` on CLINC150 val + oos_val (never the test splits):
# the lowest confidence that still sends >= 65 % of out-of-scope questions to the fallback (0.60
# is the target; the margin covers the sampling error of the 100 out-of-scope val questions).
DEFAULT_THRESHOLD = 0.58

# Logistic calibration of ln(match strength), fitted by `bench.answer_quality --fit-calibration`.
CALIBRATION_EXPONENT = 2.74
CALIBRATION_INTERCEPT = 5.21

# Retrieval settings, tuned on CLINC150 val (see the module docstring).
EXAMPLE_VIEW_K1 = 1.2
EXAMPLE_VIEW_B = 0.9
PROFILE_VIEW_K1 = 3.0
PROFILE_VIEW_B = 0.75
PROFILE_WEIGHT = 0.3
# An entry's vote is the mean of its best ceil(VOTER_SHARE * documents) documents, 1 to 5: the
# best single document for thin entries (averaging in their unrelated examples would make their
# strengths, hence confidences, incomparable with rich entries), the best five for rich ones.
MAX_VOTERS_PER_ENTRY = 5
VOTER_SHARE = 0.05
# A function word ("the", "for") the knowledge never uses weighs as a term found in half of the
# documents: its absence says nothing about the subject, unlike an unknown content word.
UNKNOWN_FUNCTION_WORD_IDF = math.log(2.0)
# Only the best documents are grouped per entry: an exact top-k per entry over every matching
# document would mean sorting up to the whole corpus on each query.
CANDIDATE_DOCUMENTS = 256

# A term in at least this share of a view's documents is stored as a dense column (`_TermView`).
DENSE_COLUMN_MIN_DOCUMENT_SHARE = 0.25

CACHE_CAPACITY = 256
# Builds cost ~40 us per document (bm25s indexes in Python): from this many documents (~4 ms)
# they run in a worker thread; smaller ones are cheaper inline than the thread hand-off.
OFF_LOOP_BUILD_MIN_DOCUMENTS = 100

# Small talk is recognised by rule, not by retrieval: the reply is certain to fit.
SMALL_TALK_CONFIDENCE = 1.0

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int32]


# --- engine settings ------------------------------------------------------------------------------

KNOWLEDGE_CONFIG_KEYS = frozenset({"threshold"})


def _valid_threshold(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"threshold must be a number from 0 to 1, got {value!r}")
    threshold = float(value)
    if not math.isfinite(threshold) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a number from 0 to 1, got {value!r}")
    return threshold


def validate_knowledge_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Checks a bot's `engine_config` for the knowledge engine and returns it normalised.

    Raises `ValueError` naming the offending key, so the API can answer 422 with that message.
    """
    if not isinstance(config, Mapping):
        raise ValueError("engine_config must be an object")
    unknown = sorted(str(key) for key in set(config) - KNOWLEDGE_CONFIG_KEYS)
    if unknown:
        allowed = ", ".join(sorted(KNOWLEDGE_CONFIG_KEYS))
        raise ValueError(
            f"unknown knowledge engine setting(s): {', '.join(unknown)} (allowed: {allowed})"
        )
    normalised: dict[str, Any] = {}
    if "threshold" in config:
        normalised["threshold"] = _valid_threshold(config["threshold"])
    return normalised


def confidence_from_strength(strength: float) -> float:
    """Maps a match strength in [0, 1] to the calibrated confidence in [0, 1).

    A logistic curve in log-strength, P = 1 / (1 + exp(-(a * ln s + b))) = s^a / (s^a + e^-b),
    estimates the probability that the best entry is the right answer. It fitted CLINC150 val
    better than a logistic in the strength itself (expected calibration error 0.013 against
    0.032), and it sends "nothing matched" (s = 0) to exactly zero.
    """
    if strength <= 0.0:
        return 0.0
    powered = math.pow(min(strength, 1.0), CALIBRATION_EXPONENT)
    return powered / (powered + math.exp(-CALIBRATION_INTERCEPT))


# --- the index ------------------------------------------------------------------------------------


class _TermView:
    """One BM25 view: the precomputed BM25 weight of every (term, document) pair, term-major.

    bm25s builds the weights (its "eager" sparse index); scoring a query is then the sum of its
    terms' columns, and the document frequencies give the idf used to normalise the sum.

    Terms found in at least a quarter of the documents ("how", "my", "i") are kept as dense
    columns: adding a dense column is a plain vector add, about twenty times faster than
    scattering a long posting list, and at that frequency a dense column costs at most twice its
    sparse form. At 50,000 entries this is what keeps a query around a millisecond.
    """

    def __init__(self, documents: Sequence[list[str]], *, k1: float, b: float) -> None:
        self.document_count = len(documents)
        self._term_ids: dict[str, int] = {}
        self._idf: npt.NDArray[np.float64] = np.zeros(0, dtype=np.float64)
        self._weights: FloatArray = np.zeros(0, dtype=np.float32)
        self._document_ids: IntArray = np.zeros(0, dtype=np.int32)
        self._column_starts: npt.NDArray[np.int64] = np.zeros(1, dtype=np.int64)
        self._dense_columns: dict[int, FloatArray] = {}
        # Lucene's idf for a term no document has: an unknown word counts as fully unmatched.
        self._unknown_term_idf = math.log(1.0 + (self.document_count + 0.5) / 0.5)
        if not any(documents):
            return
        model = bm25s.BM25(k1=k1, b=b, method="lucene")
        model.index(list(documents), create_empty_token=False, show_progress=False)
        weights = np.asarray(model.scores["data"], dtype=np.float32)
        document_ids = np.asarray(model.scores["indices"], dtype=np.int32)
        column_starts = np.asarray(model.scores["indptr"], dtype=np.int64)
        document_frequency = np.diff(column_starts)
        self._term_ids = dict(model.vocab_dict)
        self._idf = np.log1p(
            (self.document_count - document_frequency + 0.5) / (document_frequency + 0.5)
        )
        dense = document_frequency >= DENSE_COLUMN_MIN_DOCUMENT_SHARE * self.document_count
        for term_id in np.flatnonzero(dense):
            begin, end = column_starts[term_id], column_starts[term_id + 1]
            column = np.zeros(self.document_count, dtype=np.float32)
            column[document_ids[begin:end]] = weights[begin:end]
            self._dense_columns[int(term_id)] = column
        sparse_postings = np.repeat(~dense, document_frequency)
        self._weights = weights[sparse_postings]
        self._document_ids = document_ids[sparse_postings]
        self._column_starts = np.zeros_like(column_starts)
        np.cumsum(np.where(dense, 0, document_frequency), out=self._column_starts[1:])

    def shares(self, query_terms: Sequence[str]) -> tuple[FloatArray, IntArray]:
        """Each document's BM25 score divided by the query's own weight (a share in [0, 1]),
        and the documents that hold at least one of the query's less common (sparse) terms.

        A term's BM25 weight in any document is below its idf, so a document's score can only
        approach the sum of the query's idfs; dividing by that sum makes scores comparable
        between short and long questions and between small and large knowledge bases. A term
        repeated in the question counts as often as it is repeated, but is added only once.
        """
        scores = np.zeros(self.document_count, dtype=np.float32)
        query_weight = 0.0
        hits: list[IntArray] = []
        for term, repeats in Counter(query_terms).items():
            term_id = self._term_ids.get(term)
            if term_id is None:
                unknown_idf = (
                    UNKNOWN_FUNCTION_WORD_IDF if term in FUNCTION_WORDS else self._unknown_term_idf
                )
                query_weight += repeats * unknown_idf
                continue
            query_weight += repeats * float(self._idf[term_id])
            column = self._dense_columns.get(term_id)
            if column is not None:
                scores += column if repeats == 1 else np.float32(repeats) * column
                continue
            begin, end = self._column_starts[term_id], self._column_starts[term_id + 1]
            documents = self._document_ids[begin:end]
            weights = self._weights[begin:end]
            scores[documents] += weights if repeats == 1 else np.float32(repeats) * weights
            hits.append(documents)
        if query_weight > 0.0:
            scores /= np.float32(query_weight)
        hit_documents = np.concatenate(hits) if hits else np.zeros(0, dtype=np.int32)
        return scores, hit_documents


@dataclass(frozen=True)
class KnowledgeMatch:
    """An entry found for a question: `strength` is the raw match, `confidence` its calibration."""

    position: int
    entry_id: UUID
    question: str
    answer: str
    strength: float
    confidence: float


class KnowledgeIndex:
    """A bot's knowledge, indexed for retrieval. Immutable once built; safe to share."""

    def __init__(self, entries: Sequence[KnowledgeEntry]) -> None:
        # Only what answers need is kept; examples live on as term ids inside the views.
        self._entry_ids = [entry.id for entry in entries]
        self._questions = [entry.question for entry in entries]
        self._answers = [entry.answer for entry in entries]
        self.entry_count = len(entries)

        example_documents: list[list[str]] = []
        document_entries: list[int] = []
        profile_documents: list[list[str]] = []
        small_talk_owners: dict[SmallTalk, list[int]] = {}
        for position, entry in enumerate(entries):
            texts = [entry.question, *entry.examples]
            seen: set[tuple[str, ...]] = set()
            profile: list[str] = []
            for text in texts:
                document = terms(text)
                key = tuple(document)
                if document and key not in seen:
                    seen.add(key)
                    example_documents.append(document)
                    document_entries.append(position)
                    profile.extend(document)
            profile_documents.append(profile)
            kinds = {kind for text in texts if (kind := small_talk_kind(text)) is not None}
            for kind in kinds:
                small_talk_owners.setdefault(kind, []).append(position)

        self.document_count = len(example_documents)
        self._example_view = _TermView(example_documents, k1=EXAMPLE_VIEW_K1, b=EXAMPLE_VIEW_B)
        self._profile_view = _TermView(profile_documents, k1=PROFILE_VIEW_K1, b=PROFILE_VIEW_B)
        self._document_entries: IntArray = np.asarray(document_entries, dtype=np.int32)
        documents_per_entry = np.bincount(self._document_entries, minlength=self.entry_count)
        self._voters_per_entry = np.clip(
            np.ceil(VOTER_SHARE * documents_per_entry), 1, MAX_VOTERS_PER_ENTRY
        ).astype(np.int32)
        self._vote_divisors = self._voters_per_entry.astype(np.float32)
        self._small_talk_owners = small_talk_owners

    @property
    def is_empty(self) -> bool:
        return self.document_count == 0

    def strengths(self, query: str) -> FloatArray:
        """Every entry's match strength for `query`, in [0, 1]."""
        strengths = np.zeros(self.entry_count, dtype=np.float32)
        query_terms = terms(query)
        if self.is_empty or not query_terms:
            return strengths
        document_shares, hit_documents = self._example_view.shares(query_terms)
        if hit_documents.size:
            # Documents matching only the most common words ("how do i") cannot outrank one
            # that also matches a distinctive word; skipping them spares a sort of the corpus.
            is_candidate = np.zeros(self.document_count, dtype=np.bool_)
            is_candidate[hit_documents] = True
            candidates = np.flatnonzero(is_candidate)
        else:
            candidates = np.flatnonzero(document_shares > 0.0)
        if candidates.size > CANDIDATE_DOCUMENTS:
            best = np.argpartition(document_shares[candidates], -CANDIDATE_DOCUMENTS)
            candidates = candidates[best[-CANDIDATE_DOCUMENTS:]]
        candidate_entries = self._document_entries[candidates]
        candidate_shares = document_shares[candidates]
        # Rank each candidate within its entry (best first) and keep the entry's top k.
        order = np.lexsort((-candidate_shares, candidate_entries))
        candidate_entries, candidate_shares = candidate_entries[order], candidate_shares[order]
        group_starts = np.flatnonzero(np.r_[True, np.diff(candidate_entries) != 0])
        group_sizes = np.diff(np.r_[group_starts, len(candidate_entries)])
        rank_in_entry = np.arange(len(candidate_entries)) - np.repeat(group_starts, group_sizes)
        voting = rank_in_entry < self._voters_per_entry[candidate_entries]
        voters = candidate_entries[voting]
        np.add.at(strengths, voters, candidate_shares[voting])
        strengths[voters] /= self._vote_divisors[voters]
        strengths *= np.float32(1.0 - PROFILE_WEIGHT)
        profile_shares, _ = self._profile_view.shares(query_terms)
        strengths += np.float32(PROFILE_WEIGHT) * profile_shares
        return strengths

    def _match(self, position: int, strength: float) -> KnowledgeMatch:
        return KnowledgeMatch(
            position=position,
            entry_id=self._entry_ids[position],
            question=self._questions[position],
            answer=self._answers[position],
            strength=strength,
            confidence=confidence_from_strength(strength),
        )

    def search(self, query: str, limit: int) -> list[KnowledgeMatch]:
        """The `limit` best entries that share anything with `query`, best first."""
        if limit <= 0 or self.entry_count == 0:
            return []
        strengths = self.strengths(query)
        if limit == 1:
            best = np.array([int(np.argmax(strengths))])
        elif limit < self.entry_count:
            best = np.argpartition(strengths, -limit)[-limit:]
        else:
            best = np.arange(self.entry_count)
        best = best[np.argsort(-strengths[best], kind="stable")]
        return [
            self._match(int(position), float(strengths[position]))
            for position in best
            if strengths[position] > 0.0
        ]

    def small_talk_match(self, kind: SmallTalk, message: str) -> KnowledgeMatch | None:
        """The owner-taught entry for this kind of small talk, if any (the closest one wins)."""
        owners = self._small_talk_owners.get(kind)
        if not owners:
            return None
        strengths = self.strengths(message)[owners]
        best = int(np.argmax(strengths))
        return self._match(owners[best], float(strengths[best]))


# --- the engine -----------------------------------------------------------------------------------


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

    reads_history = False

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
        self._default_threshold = _valid_threshold(threshold)
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

    async def reply(self, request: ReplyRequest) -> AsyncIterator[ReplyEvent]:
        answer = await self._answer(request.bot, request.message)
        for piece in word_group_chunks(answer.text):
            yield ReplyChunk(text=piece)
        yield ReplyDone(
            metadata={
                "engine": ENGINE_NAME,
                "confidence": round(answer.confidence, 4),
                "fallback": answer.fallback,
                "sources": [] if answer.match is None else [str(answer.match.entry_id)],
                "matched_question": None if answer.match is None else answer.match.question,
            }
        )

    def answers_without_io(self, bot: Bot) -> bool:
        return self._cached(bot) is not None

    # -- answering --

    def threshold_for(self, bot: Bot) -> float:
        """The bot's own threshold when its settings hold a valid one, else the default."""
        raw = bot.engine_config.get("threshold")
        if raw is None:
            return self._default_threshold
        try:
            return _valid_threshold(raw)
        except ValueError:
            # Settings are validated when saved; a bad stored value must not break chatting.
            logger.warning("bot %s has an invalid knowledge threshold %r", bot.id, raw)
            return self._default_threshold

    async def _answer(self, bot: Bot, message: str) -> _Answer:
        index = await self.index_for(bot)
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

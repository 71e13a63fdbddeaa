"""A bot's knowledge, indexed: two BM25 views mixed into a match strength, then calibrated.

Apart from the engine (`engine`) so that retrieval and its calibration, which
`bench.answer_quality` measures and fits on their own, carry no caching or port concerns; the
package docstring says how the views, the vote and the calibration were chosen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import numpy as np

from adapters.engines.knowledge.bm25 import FloatArray, IntArray, TermView
from adapters.engines.knowledge.text import SmallTalk, small_talk_kind, terms
from domain.bots import KnowledgeEntry

# Logistic calibration of ln(match strength), fitted by `bench.answer_quality --fit-calibration`.
CALIBRATION_EXPONENT = 2.74
CALIBRATION_INTERCEPT = 5.21

# Retrieval settings, tuned on CLINC150 val (see the package docstring).
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
# Only the best documents are grouped per entry: an exact top-k per entry over every matching
# document would mean sorting up to the whole corpus on each query.
CANDIDATE_DOCUMENTS = 256


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
        self._example_view = TermView(example_documents, k1=EXAMPLE_VIEW_K1, b=EXAMPLE_VIEW_B)
        self._profile_view = TermView(profile_documents, k1=PROFILE_VIEW_K1, b=PROFILE_VIEW_B)
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

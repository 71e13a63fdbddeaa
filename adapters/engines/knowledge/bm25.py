"""One BM25 view of a bot's knowledge: precomputed term weights, scored as shares of the query.

Apart from the index (`index`) because this is the one place that knows bm25s and the sparse
layout of its weights; the index only asks a view for each document's share of a question.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence

import bm25s
import numpy as np
import numpy.typing as npt

from adapters.engines.knowledge.text import FUNCTION_WORDS

# bm25s sets its own logger to DEBUG at import and logs routine steps; keep them out of our logs.
logging.getLogger("bm25s").setLevel(logging.WARNING)

# A function word ("the", "for") the knowledge never uses weighs as a term found in half of the
# documents: its absence says nothing about the subject, unlike an unknown content word.
UNKNOWN_FUNCTION_WORD_IDF = math.log(2.0)

# A term in at least this share of a view's documents is stored as a dense column (`TermView`).
DENSE_COLUMN_MIN_DOCUMENT_SHARE = 0.25

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int32]


class TermView:
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

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

The rooms:
- `config`: what a bot's `engine_config` may say (the threshold, and its default).
- `text`: terms for retrieval, small talk, and cutting an answer into streamed pieces.
- `bm25`: one BM25 view (`TermView`), the only part that indexes with bm25s.
- `index`: `KnowledgeIndex`, the two views mixed into a match strength, and its calibration.
- `engine`: `KnowledgeEngine`, the ports, and the cache of indexes.

Only `config` is imported with this package: checking a bot's settings must load no numpy,
bm25s or PyStemmer. The names that need them are imported from their modules when first asked
for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.engines import loaded_on_first_use
from adapters.engines.knowledge.config import (
    DEFAULT_THRESHOLD,
    KNOWLEDGE_CONFIG_KEYS,
    validate_knowledge_config,
)

if TYPE_CHECKING:
    from adapters.engines.knowledge.engine import KnowledgeEngine
    from adapters.engines.knowledge.index import (
        CALIBRATION_EXPONENT,
        CALIBRATION_INTERCEPT,
        KnowledgeIndex,
        KnowledgeMatch,
        confidence_from_strength,
    )

__all__ = [
    "CALIBRATION_EXPONENT",
    "CALIBRATION_INTERCEPT",
    "DEFAULT_THRESHOLD",
    "KNOWLEDGE_CONFIG_KEYS",
    "KnowledgeEngine",
    "KnowledgeIndex",
    "KnowledgeMatch",
    "confidence_from_strength",
    "validate_knowledge_config",
]

# Public names whose modules import numpy, bm25s and PyStemmer, and those modules.
__getattr__ = loaded_on_first_use(
    __name__,
    {
        "KnowledgeEngine": "adapters.engines.knowledge.engine",
        "KnowledgeIndex": "adapters.engines.knowledge.index",
        "KnowledgeMatch": "adapters.engines.knowledge.index",
        "confidence_from_strength": "adapters.engines.knowledge.index",
        "CALIBRATION_EXPONENT": "adapters.engines.knowledge.index",
        "CALIBRATION_INTERCEPT": "adapters.engines.knowledge.index",
    },
)

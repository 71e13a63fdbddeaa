"""What a bot's `engine_config` may say for the `knowledge` engine: its confidence threshold.

Apart from the index and the engine so that checking a bot's settings loads no numpy, bm25s or
PyStemmer: saving an `openai` bot, or a worker that only validates, never needs them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

# Chosen by `python -m bench.answer_quality` on CLINC150 val + oos_val (never the test splits):
# the lowest confidence that still sends >= 65 % of out-of-scope questions to the fallback (0.60
# is the target; the margin covers the sampling error of the 100 out-of-scope val questions).
DEFAULT_THRESHOLD = 0.58

KNOWLEDGE_CONFIG_KEYS = frozenset({"threshold"})


def valid_threshold(value: object) -> float:
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
        normalised["threshold"] = valid_threshold(config["threshold"])
    return normalised

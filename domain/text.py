"""The one rule for text: no NUL character and no unpaired surrogate, anywhere.

Neither can be stored (PostgreSQL refuses NUL in text; no UTF-8 encoder takes a lone surrogate)
nor sent back, so text that carries one is refused where it comes in, and text the service did
not choose (an upstream model's reply) is cleaned instead.
"""

from __future__ import annotations

import re
from typing import Final

_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT_CHARACTER: Final = "\ufffd"
UNSTORABLE_TEXT_MESSAGE: Final = "must not contain NUL characters or unpaired surrogates"


def is_storable(text: str) -> bool:
    return _UNSTORABLE.search(text) is None


def storable(text: str) -> str:
    """`text` with every NUL and unpaired surrogate replaced by U+FFFD."""
    return _UNSTORABLE.sub(REPLACEMENT_CHARACTER, text)

"""Text handling for the embedded knowledge engine: terms for retrieval, small talk, streaming.

Kept apart from the index so each rule can be read (and tested) on its own: what counts as a
term, which messages are "just small talk", and how an answer is cut into streamed pieces.
"""

from __future__ import annotations

import re
import threading
from enum import StrEnum
from itertools import pairwise

import Stemmer
from bm25s.stopwords import STOPWORDS_EN_PLUS

# Letters and digits in any script; underscores split words ("pin_change" is two terms).
_WORD = re.compile(r"[^\W_]+")


_per_thread = threading.local()


def _english_stemmer() -> Stemmer.Stemmer:
    # A Snowball stemmer keeps working state (and a word cache) inside; indexes are built in
    # worker threads while the event loop answers questions, so each thread has its own.
    stemmer: Stemmer.Stemmer | None = getattr(_per_thread, "stemmer", None)
    if stemmer is None:
        stemmer = _per_thread.stemmer = Stemmer.Stemmer("english")
    return stemmer


def terms(text: str) -> list[str]:
    """The retrieval terms of a text: case-folded words, reduced to their English stem.

    Stemming lets "resetting my passwords" meet "reset password"; on CLINC150 val it lifts
    in-scope accuracy at 65 % out-of-scope recall from 0.876 to 0.883. Stop words are kept:
    BM25's idf already weighs them down, and removing them cost about 1.5 points (intents such
    as "what is my balance" and "transfer my balance" differ by such words).
    """
    words = _WORD.findall(text.casefold())
    if not words:
        return []
    stems: list[str] = _english_stemmer().stemWords(words)
    return stems


# Words that shape a question but say little about its subject ("the", "for", "my"): bm25s's
# English list (NLTK's), as stems so they compare with `terms`.
FUNCTION_WORDS = frozenset(terms(" ".join(STOPWORDS_EN_PLUS)))


# --- small talk -----------------------------------------------------------------------------------


class SmallTalk(StrEnum):
    GREETING = "greeting"
    THANKS = "thanks"
    GOODBYE = "goodbye"


# Phrases per kind. A message is small talk when it is nothing but these phrases (and a few
# fillers such as "ok" or "great"), so "hi, how do I reset my password?" is a question, not a hello.
_PHRASES: dict[SmallTalk, tuple[str, ...]] = {
    SmallTalk.GREETING: (
        r"(?:hi|hello|hey|hiya|heya|howdy|hola|yo|greetings|good (?:morning|afternoon|evening|day)"
        r"|morning)(?: (?:there|everyone|everybody|all|folks|friend|bot|again))?",
    ),
    SmallTalk.THANKS: (
        r"(?:thanks|thank you|thank u|thankyou|thanx|thx|ty|many thanks|cheers)"
        r"(?: (?:so much|very much|a lot|a bunch|a million|again|loads))?"
        r"(?: for (?:all )?(?:your|the|that|this) (?:help|answer|reply|info|information)"
        r"| for (?:helping|that|this|everything))?",
        r"(?:i )?(?:really )?appreciate (?:it|that|your help|the help)",
        r"much appreciated",
    ),
    SmallTalk.GOODBYE: (
        r"(?:bye|bye bye|goodbye|good bye|bye for now)(?: then)?",
        r"(?:see (?:you|ya|u)|talk to you|catch you|ttyl|cya)(?: (?:later|soon|tomorrow))?",
        r"later",
        r"farewell",
        r"good night",
        r"take care",
        r"have a (?:nice|good|great) (?:day|evening|night|one|weekend)",
    ),
}
_FILLERS = (
    r"(?:ok|okay|k|great|cool|awesome|perfect|nice|alright|all right|oh|well|so|and"
    r"|thats all|that is all|thats it|thats all i need)"
)

# One phrase (or filler), which must end at a word boundary of the normalised text.
_SMALL_TALK_PIECE = re.compile(
    "(?:"
    + "|".join(f"(?P<{kind.value}>{'|'.join(phrases)})" for kind, phrases in _PHRASES.items())
    + f"|(?P<filler>{_FILLERS})"
    + ")(?= |$)"
)
# When a message mixes kinds ("thanks, bye"), the one that ends the exchange answers.
_PRECEDENCE = (SmallTalk.GOODBYE, SmallTalk.THANKS, SmallTalk.GREETING)


def _normalise_chat(text: str) -> str:
    # Apostrophes vanish ("that's" -> "thats"); any other punctuation or emoji becomes a space.
    text = text.casefold().replace("'", "").replace("\u2019", "")
    return " ".join(_WORD.findall(text))


def small_talk_kind(message: str) -> SmallTalk | None:
    """The kind of small talk a message is, or None when it carries anything else.

    The message is consumed phrase by phrase from the left; one word that belongs to no phrase
    makes it a real question. At least one greeting, thanks or goodbye phrase is needed (a bare
    "ok" is not small talk).
    """
    text = _normalise_chat(message)
    if not text or len(text) > 80:
        return None
    found: set[SmallTalk] = set()
    position = 0
    while position < len(text):
        piece = _SMALL_TALK_PIECE.match(text, position)
        if piece is None:
            return None
        if piece.lastgroup is not None and piece.lastgroup != "filler":
            found.add(SmallTalk(piece.lastgroup))
        position = piece.end() + 1  # past the space that the lookahead required
    return next((kind for kind in _PRECEDENCE if kind in found), None)


DEFAULT_SMALL_TALK_REPLIES: dict[SmallTalk, str] = {
    SmallTalk.GREETING: "Hello! How can I help you today?",
    SmallTalk.THANKS: "You're welcome! Is there anything else I can help you with?",
    SmallTalk.GOODBYE: "Goodbye! Come back any time you have a question.",
}


# --- streaming ------------------------------------------------------------------------------------

_WORD_START = re.compile(r"\S+")
MIN_WORDS_PER_CHUNK = 4
MAX_CHUNKS = 16


def word_group_chunks(text: str) -> list[str]:
    """Cuts a reply into a few pieces of whole words whose concatenation is exactly `text`.

    The knowledge engine has its whole answer at once; streaming it in word groups keeps the SSE
    and OpenAI `stream: true` paths exercised the same way a token-by-token model would, without
    turning a long answer into hundreds of events (at most `MAX_CHUNKS`).
    """
    starts = [match.start() for match in _WORD_START.finditer(text)]
    if not starts:
        return [text] if text else []
    words_per_chunk = max(MIN_WORDS_PER_CHUNK, -(-len(starts) // MAX_CHUNKS))
    # The first boundary is 0 (not the first word's start) so leading whitespace is kept.
    boundaries = [0, *starts[words_per_chunk::words_per_chunk], len(text)]
    return [text[begin:end] for begin, end in pairwise(boundaries)]

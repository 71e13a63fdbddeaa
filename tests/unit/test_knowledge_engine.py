"""The embedded knowledge engine: retrieval, fallback, small talk, streaming and index caching."""

from __future__ import annotations

import asyncio
import math
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import pytest

from adapters.engines.knowledge import (
    DEFAULT_THRESHOLD,
    KnowledgeEngine,
    KnowledgeIndex,
    confidence_from_strength,
    validate_knowledge_config,
)
from adapters.engines.knowledge import engine as knowledge_module
from adapters.engines.knowledge.text import SmallTalk, small_talk_kind, terms, word_group_chunks
from application.ports import ReplyChunk, ReplyDone, ReplyEvent, ReplyRequest
from bench import answer_quality
from domain.bots import Bot, KnowledgeEntry
from tests.factories import BotFactory, KnowledgeEntryFactory

pytestmark = pytest.mark.unit

FALLBACK = "I can't help with that one, sorry."
GREETING = "Hi, I'm the store assistant."
LONG_ANSWER = (
    "Open Settings, choose Security, then select Reset password. We email you a link that "
    "stays valid for one hour; follow it and choose a new password of at least eight characters."
)


class EntriesLoader:
    """`load_entries` for the engine, counting calls per bot (each call means an index build)."""

    def __init__(self, entries_by_bot: dict[UUID, list[KnowledgeEntry]], delay: float = 0.0):
        self.entries_by_bot = entries_by_bot
        self.delay = delay
        self.calls: Counter[UUID] = Counter()

    async def __call__(self, bot_id: UUID) -> list[KnowledgeEntry]:
        self.calls[bot_id] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        return list(self.entries_by_bot.get(bot_id, []))


def knowledge_entry(bot: Bot, question: str, answer: str, *examples: str) -> KnowledgeEntry:
    entry: KnowledgeEntry = KnowledgeEntryFactory(
        bot_id=bot.id, question=question, answer=answer, examples=list(examples)
    )
    return entry


def store_entries(bot: Bot) -> list[KnowledgeEntry]:
    def entry(question: str, answer: str, examples: list[str]) -> KnowledgeEntry:
        return knowledge_entry(bot, question, answer, *examples)

    return [
        entry(
            "How do I reset my password?",
            LONG_ANSWER,
            ["I forgot my password", "can't log in to my account", "change my login password"],
        ),
        entry(
            "When will my order arrive?",
            "Orders arrive within 3 to 5 working days.",
            ["where is my parcel", "track my order", "delivery time for my package"],
        ),
        entry(
            "How do I get a refund?",
            "Send the item back within 30 days and we refund you in full.",
            ["I want my money back", "return an item for a refund"],
        ),
        entry(
            "What are your opening hours?",
            "We are open from 9 am to 6 pm, Monday to Saturday.",
            ["when are you open", "what time do you close"],
        ),
    ]


def store_bot(**overrides: Any) -> Bot:
    settings: dict[str, Any] = {"greeting": GREETING, "fallback_message": FALLBACK}
    settings.update(overrides)
    bot: Bot = BotFactory(**settings)
    return bot


def engine_for(*bots: Bot, **options: Any) -> tuple[KnowledgeEngine, EntriesLoader]:
    loader = EntriesLoader({bot.id: store_entries(bot) for bot in bots})
    return KnowledgeEngine(loader, **options), loader


async def events_of(engine: KnowledgeEngine, bot: Bot, message: str) -> list[ReplyEvent]:
    request = ReplyRequest(bot=bot, history=[], message=message)
    return [event async for event in engine.reply(request)]


async def ask(engine: KnowledgeEngine, bot: Bot, message: str) -> tuple[str, dict[str, Any]]:
    """The reply's full text and its metadata."""
    events = await events_of(engine, bot, message)
    done = events[-1]
    assert isinstance(done, ReplyDone)
    text = "".join(event.text for event in events if isinstance(event, ReplyChunk))
    return text, done.metadata


# --- answering from knowledge ---------------------------------------------------------------------


async def test_the_exact_question_gets_its_answer_with_metadata() -> None:
    bot = store_bot()
    engine, loader = engine_for(bot)
    password_entry = loader.entries_by_bot[bot.id][0]

    text, metadata = await ask(engine, bot, "How do I reset my password?")

    assert text == LONG_ANSWER
    assert metadata == {
        "engine": "knowledge",
        "confidence": metadata["confidence"],
        "fallback": False,
        "sources": [str(password_entry.id)],
        "matched_question": "How do I reset my password?",
    }
    assert DEFAULT_THRESHOLD <= metadata["confidence"] <= 1.0
    assert metadata["confidence"] == round(metadata["confidence"], 4)


@pytest.mark.parametrize(
    ("question", "expected_start"),
    [
        ("I forgot the password for my account", "Open Settings"),
        ("resetting passwords", "Open Settings"),
        ("Where's my parcel? It hasn't arrived", "Orders arrive"),
        ("can I get my money back?", "Send the item back"),
        ("What time do you open on Saturday?", "We are open"),
    ],
)
async def test_paraphrases_find_their_entry(question: str, expected_start: str) -> None:
    bot = store_bot()
    engine, _ = engine_for(bot)

    text, metadata = await ask(engine, bot, question)

    assert text.startswith(expected_start)
    assert metadata["fallback"] is False
    assert len(metadata["sources"]) == 1


@pytest.mark.parametrize(
    "question",
    ["What is the weather like on Mars?", "Who won the football world cup in 1998?", "?!", ""],
)
async def test_unrelated_questions_get_the_bots_fallback_message(question: str) -> None:
    bot = store_bot()
    engine, _ = engine_for(bot)

    text, metadata = await ask(engine, bot, question)

    assert text == FALLBACK
    assert metadata["fallback"] is True
    assert metadata["sources"] == []
    assert metadata["matched_question"] is None
    assert 0.0 <= metadata["confidence"] < DEFAULT_THRESHOLD


async def test_a_question_sharing_one_common_word_is_not_answered() -> None:
    bot = store_bot()
    engine, _ = engine_for(bot)

    text, metadata = await ask(engine, bot, "How do I bake sourdough bread at home?")

    assert metadata["fallback"] is True
    assert text == FALLBACK


# --- small talk -----------------------------------------------------------------------------------


@pytest.mark.parametrize("message", ["hi", "Hello there!", "good morning", "Hey 👋", "hiya"])
async def test_greetings_answer_with_the_bots_greeting(message: str) -> None:
    bot = store_bot()
    engine, _ = engine_for(bot)

    text, metadata = await ask(engine, bot, message)

    assert text == GREETING
    assert metadata["fallback"] is False
    assert metadata["sources"] == []
    assert metadata["matched_question"] is None


async def test_a_bot_without_a_greeting_still_says_hello() -> None:
    bot = store_bot(greeting="")
    engine, _ = engine_for(bot)

    text, metadata = await ask(engine, bot, "hello")

    assert text.startswith("Hello!")
    assert metadata["fallback"] is False


@pytest.mark.parametrize(
    ("message", "expected_start"),
    [
        ("thanks!", "You're welcome"),
        ("Thank you so much", "You're welcome"),
        ("ok, thanks for your help", "You're welcome"),
        ("bye", "Goodbye"),
        ("see you", "Goodbye"),
        ("Thanks, bye!", "Goodbye"),
    ],
)
async def test_thanks_and_goodbyes_are_answered_without_knowledge(
    message: str, expected_start: str
) -> None:
    bot = store_bot()
    engine, _ = engine_for(bot)

    text, metadata = await ask(engine, bot, message)

    assert text.startswith(expected_start)
    assert metadata["fallback"] is False
    assert metadata["sources"] == []


async def test_a_greeting_followed_by_a_question_goes_to_the_knowledge() -> None:
    bot = store_bot()
    engine, _ = engine_for(bot)

    text, metadata = await ask(engine, bot, "hi, how do I reset my password?")

    assert text == LONG_ANSWER
    assert metadata["sources"]


async def test_an_entry_taught_for_small_talk_answers_it() -> None:
    bot = store_bot()
    hello_entry = knowledge_entry(
        bot,
        "greeting",
        "Welcome to the shop! Ask me about orders or refunds.",
        "hello",
        "hi there",
    )
    engine = KnowledgeEngine(EntriesLoader({bot.id: [*store_entries(bot), hello_entry]}))

    text, metadata = await ask(engine, bot, "Hello!")

    assert text == hello_entry.answer
    assert metadata["sources"] == [str(hello_entry.id)]
    assert metadata["fallback"] is False
    # Thanks were not taught, so they still get the built-in reply.
    thanks_text, _ = await ask(engine, bot, "thanks")
    assert thanks_text.startswith("You're welcome")


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("hi", SmallTalk.GREETING),
        ("Good evening, everyone", SmallTalk.GREETING),
        ("thx", SmallTalk.THANKS),
        ("much appreciated!", SmallTalk.THANKS),
        ("that's all, thanks", SmallTalk.THANKS),
        ("take care", SmallTalk.GOODBYE),
        ("have a nice day", SmallTalk.GOODBYE),
        ("ok", None),
        ("hi, how do I reset my password?", None),
        ("thank you for the refund, when does it arrive?", None),
        ("tyre pressure", None),
        ("", None),
    ],
)
def test_small_talk_is_only_a_message_made_of_small_talk(
    message: str, kind: SmallTalk | None
) -> None:
    assert small_talk_kind(message) is kind


# --- streaming ------------------------------------------------------------------------------------


async def test_the_answer_streams_in_word_groups_ending_with_one_done() -> None:
    bot = store_bot()
    engine, _ = engine_for(bot)

    events = await events_of(engine, bot, "How do I reset my password?")

    chunks = [event for event in events if isinstance(event, ReplyChunk)]
    assert 2 <= len(chunks) <= 16
    assert "".join(chunk.text for chunk in chunks) == LONG_ANSWER
    assert all(chunk.text.strip() for chunk in chunks)
    assert isinstance(events[-1], ReplyDone)
    assert sum(isinstance(event, ReplyDone) for event in events) == 1


async def test_a_fallback_also_streams_and_ends_with_one_done() -> None:
    bot = store_bot()
    engine, _ = engine_for(bot)

    events = await events_of(engine, bot, "quantum chromodynamics")

    assert "".join(e.text for e in events if isinstance(e, ReplyChunk)) == FALLBACK
    assert [type(e) for e in events].count(ReplyDone) == 1
    assert isinstance(events[-1], ReplyDone)


@pytest.mark.parametrize(
    "text",
    ["one", "  leading and trailing  ", "a\nb\tc  d " * 40, "x" * 50, "word " * 1000, " "],
)
def test_word_group_chunks_concatenate_to_the_text(text: str) -> None:
    chunks = word_group_chunks(text)

    assert "".join(chunks) == text
    assert len(chunks) <= 16


def test_word_group_chunks_of_nothing_is_nothing() -> None:
    assert word_group_chunks("") == []


# --- the index cache ------------------------------------------------------------------------------


async def test_the_index_is_built_once_per_knowledge_revision() -> None:
    bot = store_bot()
    engine, loader = engine_for(bot)

    for question in ["track my order", "refund please", "hi", "opening hours"]:
        await ask(engine, bot, question)
    await engine.retrieve(bot, "password", limit=3)

    assert loader.calls[bot.id] == 1


async def test_a_new_knowledge_revision_rebuilds_the_index() -> None:
    bot = store_bot()
    engine, loader = engine_for(bot)
    _, before = await ask(engine, bot, "Do you sell gift cards?")
    assert before["fallback"] is True

    gift_cards = knowledge_entry(bot, "Do you sell gift cards?", "Yes, from 10 to 200 euros.")
    loader.entries_by_bot[bot.id].append(gift_cards)
    bot.knowledge_revision += 1
    text, after = await ask(engine, bot, "Do you sell gift cards?")

    assert loader.calls[bot.id] == 2
    assert text == "Yes, from 10 to 200 euros."
    assert after["sources"] == [str(gift_cards.id)]


async def test_an_older_revision_is_served_by_the_newer_cached_index() -> None:
    bot = store_bot(knowledge_revision=5)
    engine, loader = engine_for(bot)
    await ask(engine, bot, "track my order")

    stale_copy = store_bot(id=bot.id, knowledge_revision=4)
    await ask(engine, stale_copy, "track my order")

    assert loader.calls[bot.id] == 1


async def test_concurrent_first_questions_build_the_index_once() -> None:
    bot = store_bot()
    loader = EntriesLoader({bot.id: store_entries(bot)}, delay=0.02)
    engine = KnowledgeEngine(loader)

    replies = await asyncio.gather(*(ask(engine, bot, "track my order") for _ in range(10)))

    assert loader.calls[bot.id] == 1
    assert {text for text, _ in replies} == {"Orders arrive within 3 to 5 working days."}


async def test_the_cache_keeps_the_most_recently_used_bots() -> None:
    first, second = store_bot(), store_bot()
    engine, loader = engine_for(first, second, cache_capacity=1)

    await ask(engine, first, "track my order")
    await ask(engine, second, "track my order")
    await ask(engine, first, "track my order")

    assert loader.calls == Counter({first.id: 2, second.id: 1})


async def test_a_large_index_is_built_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    bot = store_bot()
    entries = [
        knowledge_entry(
            bot,
            f"What is the price of product {n}?",
            f"Product {n} costs {n} euros.",
            f"price of item {n}",
            f"how much is product {n}",
            f"cost of {n}",
        )
        for n in range(knowledge_module.OFF_LOOP_BUILD_MIN_DOCUMENTS // 4 + 1)
    ]
    build_threads: list[threading.Thread] = []

    class RecordingIndex(KnowledgeIndex):
        def __init__(self, entries: Sequence[KnowledgeEntry]) -> None:
            build_threads.append(threading.current_thread())
            super().__init__(entries)

    monkeypatch.setattr(knowledge_module, "KnowledgeIndex", RecordingIndex)
    engine = KnowledgeEngine(EntriesLoader({bot.id: entries}))

    last = len(entries) - 1
    text, _ = await ask(engine, bot, f"how much is product {last}")

    assert text == f"Product {last} costs {last} euros."
    assert build_threads == [build_threads[0]]
    assert build_threads[0] is not threading.main_thread()


# --- thresholds and settings ----------------------------------------------------------------------


async def test_a_bot_threshold_overrides_the_default() -> None:
    strict, lenient = store_bot(engine_config={"threshold": 1.0}), store_bot()
    lenient.engine_config = {"threshold": 0.0}
    engine, _ = engine_for(strict, lenient)

    strict_text, strict_meta = await ask(engine, strict, "How do I reset my password?")
    lenient_text, lenient_meta = await ask(engine, lenient, "my account")

    assert strict_text == FALLBACK
    assert strict_meta["fallback"] is True
    assert lenient_meta["fallback"] is False
    assert lenient_text != FALLBACK


async def test_the_engine_default_threshold_is_configurable() -> None:
    bot = store_bot()
    engine, _ = engine_for(bot, threshold=1.0)

    _, metadata = await ask(engine, bot, "How do I reset my password?")

    assert metadata["fallback"] is True


async def test_an_invalid_stored_threshold_falls_back_to_the_default() -> None:
    bot = store_bot(engine_config={"threshold": "high"})
    engine, _ = engine_for(bot)

    assert engine.threshold_for(bot) == DEFAULT_THRESHOLD
    _, metadata = await ask(engine, bot, "How do I reset my password?")
    assert metadata["fallback"] is False


@pytest.mark.parametrize(
    ("config", "normalised"),
    [({}, {}), ({"threshold": 0.4}, {"threshold": 0.4}), ({"threshold": 1}, {"threshold": 1.0})],
)
def test_valid_knowledge_configs_are_normalised(
    config: dict[str, Any], normalised: dict[str, Any]
) -> None:
    assert validate_knowledge_config(config) == normalised


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"threshold": 0.5, "temperature": 0.2},
            "unknown knowledge engine setting(s): temperature",
        ),
        ({"model": "x"}, "unknown knowledge engine setting(s): model"),
        ({"threshold": "high"}, "threshold must be a number from 0 to 1"),
        ({"threshold": True}, "threshold must be a number from 0 to 1"),
        ({"threshold": None}, "threshold must be a number from 0 to 1"),
        ({"threshold": -0.1}, "threshold must be a number from 0 to 1"),
        ({"threshold": 1.5}, "threshold must be a number from 0 to 1"),
        ({"threshold": math.nan}, "threshold must be a number from 0 to 1"),
    ],
)
def test_invalid_knowledge_configs_are_refused(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_knowledge_config(config)


def test_a_config_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match="must be an object"):
        validate_knowledge_config(["threshold"])  # type: ignore[arg-type]


def test_an_engine_refuses_an_invalid_default_threshold() -> None:
    with pytest.raises(ValueError, match="threshold"):
        KnowledgeEngine(EntriesLoader({}), threshold=2.0)


# --- empty knowledge, retrieval, confidence -------------------------------------------------------


async def test_empty_knowledge_always_falls_back_except_small_talk() -> None:
    bot = store_bot()
    engine = KnowledgeEngine(EntriesLoader({}))

    text, metadata = await ask(engine, bot, "How do I reset my password?")
    greeting, greeting_metadata = await ask(engine, bot, "hi")

    assert text == FALLBACK
    assert metadata == {
        "engine": "knowledge",
        "confidence": 0.0,
        "fallback": True,
        "sources": [],
        "matched_question": None,
    }
    assert greeting == GREETING
    assert greeting_metadata["fallback"] is False
    assert await engine.retrieve(bot, "password", limit=5) == []


async def test_entries_whose_texts_have_no_words_are_harmless() -> None:
    bot = store_bot()
    blank = knowledge_entry(bot, "???", "!!!")
    engine = KnowledgeEngine(EntriesLoader({bot.id: [blank]}))

    text, metadata = await ask(engine, bot, "anything at all")

    assert text == FALLBACK
    assert metadata["confidence"] == 0.0


async def test_retrieve_returns_the_most_relevant_entries_best_first() -> None:
    bot = store_bot()
    engine, loader = engine_for(bot)
    entries = loader.entries_by_bot[bot.id]

    found = await engine.retrieve(bot, "I forgot my password and can't track my order", limit=2)

    assert {hit.entry_id for hit in found} == {entries[0].id, entries[1].id}
    assert found[0].score >= found[1].score
    assert all(0.0 < hit.score <= 1.0 for hit in found)
    assert found[0].answer in {entries[0].answer, entries[1].answer}
    assert await engine.retrieve(bot, "password", limit=0) == []
    assert await engine.retrieve(bot, "xylophone", limit=3) == []


def test_confidence_grows_with_match_strength_from_zero() -> None:
    strengths = [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.5]
    confidences = [confidence_from_strength(s) for s in strengths]

    assert confidences[0] == 0.0
    assert confidences == sorted(confidences)
    assert all(0.0 <= c < 1.0 for c in confidences)


def test_terms_are_case_folded_stems_split_on_underscores() -> None:
    assert terms("Resetting my PASSWORDS") == ["reset", "my", "password"]
    assert terms("pin_change") == ["pin", "chang"]
    assert terms("?!") == []


# --- the benchmark --------------------------------------------------------------------------------


def test_the_threshold_is_the_lowest_meeting_the_out_of_scope_recall() -> None:
    def outcome(intent: str, confidence: float) -> answer_quality.Outcome:
        return answer_quality.Outcome(
            intent, answer_quality.Answer(f"[{intent}]", False, confidence), 0.001
        )

    outcomes = [outcome("oos", c) for c in (0.1, 0.2, 0.3, 0.4, 0.9)] + [
        outcome("balance", 0.95),
        outcome("balance", 0.35),
    ]

    threshold = answer_quality.choose_threshold(outcomes, min_oos_recall=0.6)

    assert threshold == pytest.approx(0.31)
    judged = answer_quality.with_threshold(outcomes, threshold)
    assert answer_quality.oos_recall(judged) == pytest.approx(0.6)
    assert answer_quality.in_scope_accuracy(judged) == pytest.approx(1.0)


@pytest.mark.skipif(
    not answer_quality.dataset_path().exists(), reason="CLINC150 data set not available"
)
async def test_the_quick_benchmark_gives_sane_numbers() -> None:
    # Straight on the engine, for speed; `make bench` asks through the application layer.
    report = await answer_quality.evaluate(answer_quality.engine_bot, quick=True)

    assert report.entries == 150
    assert report.in_scope_accuracy >= 0.80
    assert report.oos_recall >= 0.50
    assert report.answers_kept >= 0.90
    assert abs(report.chosen_threshold - DEFAULT_THRESHOLD) <= 0.1
    assert report.lines()[-1].startswith("  targets met:")

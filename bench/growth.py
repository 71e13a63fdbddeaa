"""Cost growth: does a reply get slower as a conversation's history or a bot's knowledge grows?

Single sequential posts through httpx (not wrk): the question is the latency of one reply in a
big conversation or against a big knowledge base, not throughput. History is filled straight into
the database (10,000 messages through the API would take minutes); knowledge goes through the
bulk endpoint so the service builds its index as it would in production.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from bench import knowledge
from bench.api_client import ApiClient, ApiError
from bench.progress import say
from bench.stacks import ApiStack

HISTORY_LEVELS = (10, 1_000, 10_000)
KNOWLEDGE_LEVELS = (100, 5_000, 50_000)
# Reply metadata fields holding the engine's own time, most specific first; API.md promises
# `latency_ms`, the issue asks for `engine_ms` when the service reports it.
ENGINE_TIME_FIELDS = ("engine_ms", "latency_ms")


@dataclass
class GrowthPoint:
    level: int
    setup_seconds: float
    first_reply_ms: float
    end_to_end_ms: list[float] = field(default_factory=list)
    engine_ms: list[float] = field(default_factory=list)
    engine_source: str = "end-to-end"

    @property
    def median_end_to_end_ms(self) -> float:
        return statistics.median(self.end_to_end_ms) if self.end_to_end_ms else math.nan

    @property
    def median_engine_ms(self) -> float:
        if self.engine_ms:
            return statistics.median(self.engine_ms)
        return self.median_end_to_end_ms

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "setup_seconds": round(self.setup_seconds, 2),
            "first_reply_ms": round(self.first_reply_ms, 2),
            "median_end_to_end_ms": round(self.median_end_to_end_ms, 2),
            "median_engine_ms": round(self.median_engine_ms, 3),
            "engine_source": self.engine_source,
            "end_to_end_ms": [round(v, 2) for v in self.end_to_end_ms],
            "engine_ms": [round(v, 3) for v in self.engine_ms],
        }


@dataclass
class GrowthResult:
    stack: str
    history: list[GrowthPoint] = field(default_factory=list)
    knowledge: list[GrowthPoint] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "history": [p.as_dict() for p in self.history],
            "knowledge": [p.as_dict() for p in self.knowledge],
            "error": self.error,
        }


def _engine_time(body: dict[str, Any]) -> tuple[float, str] | None:
    metadata = (body.get("reply") or {}).get("metadata") or {}
    for name in ENGINE_TIME_FIELDS:
        value = metadata.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value), name
    return None


def _timed_posts(
    client: ApiClient, conversation_id: str, questions: list[str], posts: int, point: GrowthPoint
) -> None:
    for number in range(posts):
        started = time.perf_counter()
        body = client.post_message(conversation_id, questions[number % len(questions)])
        point.end_to_end_ms.append((time.perf_counter() - started) * 1000)
        engine = _engine_time(body)
        if engine is not None:
            point.engine_ms.append(engine[0])
            point.engine_source = engine[1]


def _first_post(client: ApiClient, conversation_id: str, question: str) -> float:
    # Not counted: the first reply may build an index or warm caches for this conversation.
    started = time.perf_counter()
    client.post_message(conversation_id, question)
    return (time.perf_counter() - started) * 1000


async def _fill_history(database_url: str, conversation_id: str, total: int) -> None:
    """Appends messages straight into `messages` until the conversation holds `total`.

    Uses the service's own table definitions so types are encoded as the service encodes them
    (UUIDs, aware datetimes, JSON) on both databases; seq continues gap-free from message_count.
    """
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    from adapters.sqlalchemy import tables
    from domain.conversations import MessageRole

    conversation_uuid = uuid.UUID(conversation_id)
    conversations, messages = tables.conversations, tables.messages
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            row = (
                await connection.execute(
                    sa.select(conversations.c.message_count, conversations.c.last_message_at)
                    .where(conversations.c.id == conversation_uuid)
                    .with_for_update()
                )
            ).one()
            count, last = int(row.message_count), row.last_message_at
            rows = []
            for seq in range(count + 1, total + 1):
                user = (seq - count) % 2 == 1
                last = last + timedelta(microseconds=1)
                rows.append(
                    {
                        "id": uuid.uuid4(),
                        "conversation_id": conversation_uuid,
                        "seq": seq,
                        "role": MessageRole.USER if user else MessageRole.ASSISTANT,
                        "content": f"earlier {'question' if user else 'answer'} number {seq}",
                        "metadata": {}
                        if user
                        else {
                            "engine": "knowledge",
                            "confidence": 0.9,
                            "fallback": False,
                            "sources": [],
                            "latency_ms": 1.0,
                        },
                        "created_at": last,
                    }
                )
            if rows:
                await connection.execute(messages.insert(), rows)
            await connection.execute(
                conversations.update()
                .where(conversations.c.id == conversation_uuid)
                .values(message_count=max(total, count), last_message_at=last, updated_at=last)
            )
    finally:
        await engine.dispose()


def run_growth(stack: ApiStack, posts: int) -> GrowthResult:
    result = GrowthResult(stack.name)
    fixture = stack.fixture
    client = ApiClient(stack.running.base_url, timeout=300.0)
    client.token = fixture.token
    entries = knowledge.entries(max(KNOWLEDGE_LEVELS))
    try:
        questions = knowledge.questions(entries, 48)
        for level in HISTORY_LEVELS:
            conversation_id = client.open_conversation(fixture.bot_id)
            started = time.perf_counter()
            asyncio.run(_fill_history(stack.database_url, conversation_id, level))
            point = GrowthPoint(level, time.perf_counter() - started, math.nan)
            point.first_reply_ms = _first_post(client, conversation_id, questions[0])
            _timed_posts(client, conversation_id, questions[1:], posts, point)
            result.history.append(point)
            say(
                f"{stack.name}: history {level:>6,}: reply {point.median_end_to_end_ms:.1f} ms "
                f"end-to-end (median of {posts})"
            )

        bot_id = client.create_bot("Growth bot", "Hello!")
        loaded = 0
        for level in KNOWLEDGE_LEVELS:
            setup_seconds = client.add_knowledge(bot_id, entries[loaded:level])
            if loaded == 0:
                client.publish(bot_id)
            loaded = level
            conversation_id = client.open_conversation(bot_id)
            # Questions about entries spread over the whole base, not only the first ones added.
            level_questions = knowledge.questions(entries[: level : max(1, level // 48)], 48)
            point = GrowthPoint(level, setup_seconds, math.nan)
            point.first_reply_ms = _first_post(client, conversation_id, level_questions[0])
            _timed_posts(client, conversation_id, level_questions[1:], posts, point)
            result.knowledge.append(point)
            say(
                f"{stack.name}: knowledge {level:>6,}: engine {point.median_engine_ms:.2f} ms "
                f"({point.engine_source}), reply {point.median_end_to_end_ms:.1f} ms, "
                f"bulk load {setup_seconds:.1f} s, first reply {point.first_reply_ms:.0f} ms"
            )
    except ApiError as error:
        result.error = str(error)
    except Exception as error:  # a broken direct-SQL fill must not lose the rest of the report
        result.error = f"{type(error).__name__}: {error}"
    finally:
        client.close()
    return result

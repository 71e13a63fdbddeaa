"""CPU per unit of work of the SQL adapter's named operations, in-process (no HTTP).

`.venv/bin/python -m bench.unit_of_work [pg|sqlite ...]`: for each database, the median over
interleaved rounds of the process's CPU time per unit of work (the driver's thread included,
the database server excluded) for the caller read, a bot read, a page of 20 messages, and a
post (lock, the bot read, append an exchange, commit). What the figures were is in
bench/RESULTS.md; the docstrings of adapters/sqlalchemy keep the reasons.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapters.sqlalchemy.database import create_engine
from adapters.sqlalchemy.migrations_runner import upgrade
from adapters.sqlalchemy.unit_of_work import SqlAlchemyUnitOfWorkFactory
from bench.databases import PostgresDatabase, SqliteDatabase
from domain.bots import Bot
from domain.conversations import Conversation, MessageRole
from domain.users import User

ROUNDS, PER_ROUND, WARM_UP = 7, 500, 300


async def _measure(url: str) -> dict[str, float]:
    engine = create_engine(url)
    factory = SqlAlchemyUnitOfWorkFactory(engine)
    now = datetime.now(UTC)
    owner = User.register(
        id=uuid.uuid4(), email="bench@example.com", display_name="Bench", password_hash="x", now=now
    )
    bot = Bot.create(id=uuid.uuid4(), owner_id=owner.id, name="Bench", now=now)
    conversations = [
        Conversation.start(id=uuid.uuid4(), bot_id=bot.id, now=now, user_id=owner.id)
        for _ in range(50)
    ]
    async with factory() as uow:
        await uow.users.add(owner)
        await uow.bots.add(bot)
        for conversation in conversations:
            await uow.conversations.add(conversation)
        await uow.commit()
    posted = 0

    async def read_caller() -> None:
        async with factory(read_only=True) as uow:
            await uow.users.get(owner.id)

    async def read_bot() -> None:
        async with factory(read_only=True) as uow:
            await uow.bots.get(bot.id)

    async def page() -> None:
        async with factory(read_only=True) as uow:
            await uow.conversations.get(conversations[0].id)
            await uow.messages.list_page(conversations[0].id, after_seq=0, limit=21)

    async def post() -> None:
        nonlocal posted
        posted += 1
        async with factory() as uow:
            locked = await uow.conversation_log.lock(conversations[posted % 50].id)
            assert locked is not None
            await uow.bots.get(locked.bot_id)
            at = locked.last_message_at + timedelta(milliseconds=1)
            asked = locked.append(
                message_id=uuid.uuid4(), role=MessageRole.USER, content="opening hours?", now=at
            )
            answered = locked.record_reply(
                answering=asked,
                message_id=uuid.uuid4(),
                content="9 to 5.",
                now=at,
                metadata={"engine": "knowledge", "confidence": 0.9, "sources": []},
            )
            await uow.conversation_log.append(locked, [asked, answered])
            await uow.commit()

    cases: dict[str, Callable[[], Awaitable[None]]] = {
        "read the caller": read_caller,
        "read a bot": read_bot,
        "a page of messages": page,
        "post (lock, bot, append, commit)": post,
    }
    seen: dict[str, list[float]] = {name: [] for name in cases}
    for operation in cases.values():
        for _ in range(WARM_UP):
            await operation()
    for _ in range(ROUNDS):
        for name, operation in cases.items():
            gc.collect()
            started = time.process_time()
            for _ in range(PER_ROUND):
                await operation()
            seen[name].append((time.process_time() - started) / PER_ROUND * 1e6)
    await engine.dispose()
    return {name: statistics.median(values) for name, values in seen.items()}


def main(kinds: list[str]) -> None:
    for kind in kinds or ["pg", "sqlite"]:
        database: PostgresDatabase | SqliteDatabase
        if kind == "pg":
            database = PostgresDatabase("bench_uow")
            database.create()
        else:
            database = SqliteDatabase(Path(tempfile.mkdtemp()), "bench_uow")
        url = database.sqlalchemy_url
        try:
            upgrade(url)
            figures = asyncio.run(_measure(url))
        finally:
            database.drop()
        for name, cpu in figures.items():
            print(f"{kind:7s} {name:34s} {cpu:7.0f} µs CPU")


if __name__ == "__main__":
    main(sys.argv[1:])

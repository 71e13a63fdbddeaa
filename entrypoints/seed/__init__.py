"""Loads the example bot's data shipped with the package and hands it to the seeding use case."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from application.bots import BotSettings
from application.ports import Clock, UnitOfWorkFactory
from application.seeding import ensure_example_bot
from domain.bots import KnowledgeDraft


def example_bot_data() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("example_bot.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


async def seed_example_bot(uow_factory: UnitOfWorkFactory, clock: Clock) -> bool:
    data = example_bot_data()
    drafts = [
        KnowledgeDraft(e["question"], e["answer"], e.get("examples", []), e.get("tags", []))
        for e in data["knowledge"]
    ]
    settings = BotSettings(**data["bot"])
    return await ensure_example_bot(uow_factory, clock, settings=settings, knowledge=drafts)

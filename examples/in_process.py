"""Use chatbots from another Python service, in-process: no HTTP, the same use cases.

    python examples/in_process.py                          # in-memory adapters
    CHATBOTS_DATABASE_URL=sqlite+aiosqlite:///./x.db python examples/in_process.py

With a SQL database, migrate it first (`chatbots migrate`).
"""

from __future__ import annotations

import asyncio
import os

from application.actors import UserActor
from application.bots import BotSettings
from application.conversations import ReplyDelta, ReplyStored
from domain.bots import KnowledgeDraft
from entrypoints.bootstrap import build_container, shutdown
from entrypoints.settings import Settings


async def main() -> None:
    settings = Settings(database_url=os.environ.get("CHATBOTS_DATABASE_URL", "memory://"))
    container = build_container(settings)  # the same composition root the HTTP API uses
    identity, bots, conversations = (
        container.identity(),
        container.bots(),
        container.conversations(),
    )
    try:
        user = await identity.register("team@example.com", "a long password", "Team")
        actor = UserActor(user.id, user.role)

        bot = await bots.create_bot(actor, BotSettings(name="Shop helper", greeting="Hi!"))
        await bots.import_entries(
            actor,
            bot.id,
            [
                KnowledgeDraft(
                    "What are your opening hours?",
                    "We are open 9 to 5, Monday to Friday.",
                    examples=["when are you open", "opening times"],
                ),
                KnowledgeDraft(
                    "Do you ship abroad?",
                    "Yes, to every EU country.",
                    examples=["international shipping", "do you deliver to France"],
                ),
            ],
        )
        conversation = await conversations.start_conversation(actor, bot.id)
        for question in ["When are you open?", "Do you deliver to France?"]:
            print(f"> {question}")
            async for event in conversations.post_message(actor, conversation.id, question):
                if isinstance(event, ReplyDelta):
                    print(event.text, end="", flush=True)
                elif isinstance(event, ReplyStored):
                    print(f"   (confidence {event.message.metadata['confidence']})")
    finally:
        await shutdown(container)


if __name__ == "__main__":
    asyncio.run(main())

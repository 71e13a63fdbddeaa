"""Use chatbots from another Python service, in-process: no HTTP, the same use cases.

Run it from the repository root with the virtualenv that `make run` or `make test` creates:

    .venv/bin/python examples/in_process.py                  # in-memory adapters

    export CHATBOTS_DATABASE_URL=sqlite+aiosqlite:///./example.db
    .venv/bin/chatbots migrate                               # a SQL database is migrated first
    .venv/bin/python examples/in_process.py                  # again and again: it reuses its
                                                             # user and bot

On a database that is not migrated (or not reachable) it says so and exits with status 1.
"""

from __future__ import annotations

import asyncio
import os
import sys

from sqlalchemy.engine import make_url

from application.actors import UserActor
from application.bots import BotSettings
from application.conversations import ReplyDelta, ReplyStored
from application.errors import ApplicationError, Conflict
from application.identity import IdentityService
from domain.bots import Bot, KnowledgeDraft
from domain.errors import DomainError
from entrypoints.bootstrap import build_container, shutdown
from entrypoints.settings import Settings

EMAIL, PASSWORD, BOT_NAME = "team@example.com", "a long password", "Shop helper"
ENTRIES = [
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
]


async def sign_up_or_in(identity: IdentityService) -> UserActor:
    """The example's user: registered on the first run, signed in on the next ones."""
    try:
        user = await identity.register(EMAIL, PASSWORD, "Team")
        return UserActor(user.id, user.role)
    except Conflict:  # a run before this one registered it
        tokens = await identity.login(EMAIL, PASSWORD, client_address="in-process")
        return await identity.authenticate(tokens.access_token)


async def main() -> int:
    settings = Settings(database_url=os.environ.get("CHATBOTS_DATABASE_URL", "memory://"))
    container = build_container(settings)  # the same composition root the HTTP API uses
    identity, bots, knowledge, conversations = (
        container.identity(),
        container.bots(),
        container.knowledge(),
        container.conversations(),
    )
    try:
        readiness = await container.schema_inspector().check()  # what /readyz answers
        if not readiness.ready:
            url = settings.database_url
            shown = url if settings.uses_memory else make_url(url).render_as_string()
            print(
                f"error: the database at {shown} is not ready: {readiness.detail}.\n"
                "Run `chatbots migrate` with the same CHATBOTS_DATABASE_URL, then run this again.",
                file=sys.stderr,
            )
            return 1

        actor = await sign_up_or_in(identity)
        mine = await bots.list_bots(actor, name_contains=BOT_NAME)
        bot: Bot | None = next((b for b in mine.items if b.name == BOT_NAME), None)
        if bot is None:
            bot = await bots.create_bot(actor, BotSettings(name=BOT_NAME, greeting="Hi!"))
            await knowledge.import_entries(actor, bot.id, ENTRIES)

        conversation = await conversations.threads.start_conversation(actor, bot.id)
        for question in ["When are you open?", "Do you deliver to France?"]:
            print(f"> {question}")
            async for event in conversations.chat.post_message(actor, conversation.id, question):
                if isinstance(event, ReplyDelta):
                    print(event.text, end="", flush=True)
                elif isinstance(event, ReplyStored):
                    print(f"   (confidence {event.message.metadata['confidence']})")
    except (ApplicationError, DomainError) as error:  # refusals of the use cases, not bugs
        print(f"error: {getattr(error, 'detail', '') or error}", file=sys.stderr)
        return 1
    finally:
        await shutdown(container)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

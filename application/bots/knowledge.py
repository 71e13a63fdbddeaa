"""A bot's knowledge: the question-and-answer entries it answers from, added one at a time or
imported in bulk (all or nothing), revised and deleted. Every change moves the bot's knowledge
revision on, so reply engines rebuild their index; `load_knowledge` is what they index."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from application.access import manageable_bot
from application.actors import Actor
from application.bots.versions import check_version, commit_versioned
from application.errors import NotFound
from application.pagination import Keyset, Page, clamp_limit, decode_cursor, paginate
from application.ports import Clock, IdGenerator, UnitOfWork, UnitOfWorkFactory
from domain.bots import KnowledgeDraft, KnowledgeEntry
from domain.errors import InvalidValue

MAX_BULK_ENTRIES = 5_000


class BotKnowledge:
    def __init__(self, *, uow_factory: UnitOfWorkFactory, clock: Clock, ids: IdGenerator) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._ids = ids

    async def add_entry(self, actor: Actor, bot_id: UUID, draft: KnowledgeDraft) -> KnowledgeEntry:
        """Add one knowledge entry; the bot's knowledge revision moves on."""
        async with self._uow_factory() as uow:
            bot = await manageable_bot(uow, actor, bot_id)
            entry = self._new_entry(bot.id, draft)
            await uow.knowledge.add(entry)
            await uow.bots.bump_knowledge_revision(bot.id, self._clock.now())
            await uow.commit()
        return entry

    async def import_entries(
        self, actor: Actor, bot_id: UUID, drafts: list[KnowledgeDraft]
    ) -> list[UUID]:
        """All or nothing: every entry is validated before one transaction inserts them in
        batches; one bad entry (its index is in the error) leaves the knowledge unchanged.
        Returns the new entries' ids, in the order of `drafts`."""
        if len(drafts) > MAX_BULK_ENTRIES:
            raise InvalidValue("entries", f"at most {MAX_BULK_ENTRIES} entries per request")
        async with self._uow_factory() as uow:
            bot = await manageable_bot(uow, actor, bot_id)
            entries = []
            for index, draft in enumerate(drafts):
                try:
                    entries.append(self._new_entry(bot.id, draft))
                except InvalidValue as error:
                    raise InvalidValue(f"entries.{index}.{error.field}", error.message) from error
            await uow.knowledge.add_many(entries)
            await uow.bots.bump_knowledge_revision(bot.id, self._clock.now())
            await uow.commit()
        return [entry.id for entry in entries]

    def _new_entry(self, bot_id: UUID, draft: KnowledgeDraft) -> KnowledgeEntry:
        return KnowledgeEntry.create(
            id=self._ids.new_id(),
            bot_id=bot_id,
            question=draft.question,
            answer=draft.answer,
            examples=list(draft.examples),
            tags=list(draft.tags),
            now=self._clock.now(),
        )

    async def list_entries(
        self, actor: Actor, bot_id: UUID, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[KnowledgeEntry]:
        """The bot's knowledge, oldest first."""
        size = clamp_limit(limit)
        async with self._uow_factory(read_only=True) as uow:
            await manageable_bot(uow, actor, bot_id)
            rows = await uow.knowledge.list_page(
                bot_id, after=decode_cursor(cursor), limit=size + 1
            )
        return paginate(rows, size, lambda e: Keyset(e.created_at, e.id))

    async def get_entry(self, actor: Actor, bot_id: UUID, entry_id: UUID) -> KnowledgeEntry:
        async with self._uow_factory(read_only=True) as uow:
            await manageable_bot(uow, actor, bot_id)
            return await self._entry(uow, bot_id, entry_id)

    async def update_entry(
        self,
        actor: Actor,
        bot_id: UUID,
        entry_id: UUID,
        changes: dict[str, Any],
        *,
        expected_version: int | None = None,
    ) -> KnowledgeEntry:
        """Revise an entry (If-Match honoured); the bot's knowledge revision moves on."""
        async with self._uow_factory() as uow:
            await manageable_bot(uow, actor, bot_id)
            entry = await self._entry(uow, bot_id, entry_id)
            check_version(entry.version, expected_version)
            entry.revise(self._clock.now(), **changes)
            await uow.bots.bump_knowledge_revision(bot_id, self._clock.now())
            await commit_versioned(uow, expected_version)
        return entry

    async def delete_entry(
        self,
        actor: Actor,
        bot_id: UUID,
        entry_id: UUID,
        *,
        expected_version: int | None = None,
    ) -> None:
        async with self._uow_factory() as uow:
            await manageable_bot(uow, actor, bot_id)
            entry = await self._entry(uow, bot_id, entry_id)
            check_version(entry.version, expected_version)
            await uow.knowledge.delete(entry)
            await uow.bots.bump_knowledge_revision(bot_id, self._clock.now())
            await uow.commit()

    @staticmethod
    async def _entry(uow: UnitOfWork, bot_id: UUID, entry_id: UUID) -> KnowledgeEntry:
        entry = await uow.knowledge.get(bot_id, entry_id)
        if entry is None:
            raise NotFound("No such knowledge entry.")
        return entry


async def load_knowledge(uow_factory: UnitOfWorkFactory, bot_id: UUID) -> list[KnowledgeEntry]:
    """Every entry of a bot: what a reply engine indexes (once per knowledge revision)."""
    async with uow_factory(read_only=True) as uow:
        return await uow.knowledge.all_for_bot(bot_id)

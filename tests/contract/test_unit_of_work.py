"""The same cases against every unit-of-work adapter: in-memory, SQLite and PostgreSQL.

If the in-memory adapter passes here, tests written on it (ours or another team's) mean the same
as tests on the real databases.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import timedelta

import pytest

from application.errors import ConcurrentUpdate, DuplicateKey, IntegrityViolation
from application.pagination import Keyset
from application.ports import BotFilter, ConversationFilter, IdempotencyRecord, UnitOfWorkFactory
from domain.bots import BotStatus
from domain.conversations import ConversationStatus, MessageRole, Rating
from domain.users import Role
from tests.factories import (
    BotApiKeyFactory,
    BotFactory,
    ConversationFactory,
    FeedbackFactory,
    KnowledgeEntryFactory,
    RefreshTokenFactory,
    UserFactory,
    next_time,
    stored_owner_and_bot,
)

pytestmark = pytest.mark.contract


async def test_nothing_persists_without_commit(uow_factory: UnitOfWorkFactory) -> None:
    user = UserFactory()
    async with uow_factory() as uow:
        await uow.users.add(user)
    async with uow_factory() as uow:
        assert await uow.users.get(user.id) is None


async def test_an_error_inside_the_block_rolls_back(uow_factory: UnitOfWorkFactory) -> None:
    user = UserFactory()
    with pytest.raises(RuntimeError):
        async with uow_factory() as uow:
            await uow.users.add(user)
            raise RuntimeError("boom")
    async with uow_factory() as uow:
        assert await uow.users.get_by_email(user.email) is None


async def test_committed_user_round_trips(uow_factory: UnitOfWorkFactory) -> None:
    user = UserFactory(role=Role.ADMIN)
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()
    async with uow_factory() as uow:
        loaded = await uow.users.get(user.id)
        assert loaded is not None
        assert (loaded.email, loaded.role, loaded.created_at) == (
            user.email,
            Role.ADMIN,
            user.created_at,
        )
        assert loaded.created_at.tzinfo is not None
        assert (await uow.users.get_by_email(user.email)) is not None
        assert await uow.users.count_admins() == 1


async def test_duplicate_email_is_refused(uow_factory: UnitOfWorkFactory) -> None:
    async with uow_factory() as uow:
        await uow.users.add(UserFactory(email="same@example.com"))
        await uow.commit()
    with pytest.raises(DuplicateKey) as refused:
        async with uow_factory() as uow:
            await uow.users.add(UserFactory(email="same@example.com"))
            await uow.commit()
    assert refused.value.resource == "users"


async def test_users_page_in_creation_order(uow_factory: UnitOfWorkFactory) -> None:
    users = [UserFactory() for _ in range(5)]
    async with uow_factory() as uow:
        for user in reversed(users):
            await uow.users.add(user)
        await uow.commit()
    async with uow_factory() as uow:
        first = await uow.users.list_page(after=None, limit=3)
        second = await uow.users.list_page(
            after=Keyset(first[-1].created_at, first[-1].id), limit=3
        )
    assert [u.id for u in first + second] == [u.id for u in users]


async def test_changes_to_loaded_entities_persist(uow_factory: UnitOfWorkFactory) -> None:
    user = UserFactory()
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()
    async with uow_factory() as uow:
        loaded = await uow.users.get(user.id)
        assert loaded is not None
        loaded.rename("New Name", next_time())
        await uow.commit()
    async with uow_factory() as uow:
        again = await uow.users.get(user.id)
        assert again is not None
        assert again.display_name == "New Name"


async def test_concurrent_writers_of_one_version_only_one_wins(
    uow_factory: UnitOfWorkFactory,
) -> None:
    """The If-Match pattern: read, check the version, change, commit. Exactly one writer wins.

    PostgreSQL and memory let both read and stop the loser at commit (ConcurrentUpdate); SQLite
    serialises the transactions, so the loser sees the new version (the stale-check refuses).
    """
    _, bot = await stored_owner_and_bot(uow_factory)

    async def write(name: str) -> str:
        try:
            async with uow_factory() as uow:
                loaded = await uow.bots.get(bot.id)
                assert loaded is not None
                if loaded.version != 1:
                    return "stale"
                await asyncio.sleep(0.05)
                loaded.configure({"name": name}, next_time())
                await uow.commit()
                return "won"
        except ConcurrentUpdate:
            return "stale"

    outcomes = await asyncio.gather(*(write(f"name {i}") for i in range(4)))
    assert sorted(outcomes) == ["stale", "stale", "stale", "won"]
    async with uow_factory() as uow:
        final = await uow.bots.get(bot.id)
        assert final is not None
        assert final.version == 2


async def test_bot_filters_and_newest_first(uow_factory: UnitOfWorkFactory) -> None:
    owner, first = await stored_owner_and_bot(uow_factory, name="Support helper")
    second = BotFactory(owner_id=owner.id, name="Sales", status=BotStatus.PUBLISHED)
    other_owner = UserFactory()
    foreign = BotFactory(owner_id=other_owner.id, name="Support 100%_off")
    async with uow_factory() as uow:
        await uow.users.add(other_owner)
        await uow.bots.add(second)
        await uow.bots.add(foreign)
        await uow.commit()
    async with uow_factory() as uow:
        mine = await uow.bots.list_page(BotFilter(owner_id=owner.id), after=None, limit=10)
        assert [b.id for b in mine] == [second.id, first.id]
        published = await uow.bots.list_page(
            BotFilter(status=BotStatus.PUBLISHED), after=None, limit=10
        )
        assert [b.id for b in published] == [second.id]
        support = await uow.bots.list_page(BotFilter(name_contains="SUPPORT"), after=None, limit=10)
        assert {b.id for b in support} == {first.id, foreign.id}
        literal = await uow.bots.list_page(BotFilter(name_contains="100%_"), after=None, limit=10)
        assert [b.id for b in literal] == [foreign.id]
        page2 = await uow.bots.list_page(
            BotFilter(owner_id=owner.id), after=Keyset(second.created_at, second.id), limit=10
        )
        assert [b.id for b in page2] == [first.id]
        chattable = await uow.bots.list_chattable(owner.id, limit=10)
        assert {b.id for b in chattable} == {first.id, second.id}
        assert [b.id for b in await uow.bots.list_chattable(None, limit=10)] == [second.id]


async def test_knowledge_round_trip_and_order(uow_factory: UnitOfWorkFactory) -> None:
    _, bot = await stored_owner_and_bot(uow_factory)
    entries = [
        KnowledgeEntryFactory(bot_id=bot.id, examples=[f"ex {i}"], tags=["t"]) for i in range(30)
    ]
    async with uow_factory() as uow:
        await uow.knowledge.add_many(entries)
        await uow.commit()
    async with uow_factory() as uow:
        every = await uow.knowledge.all_for_bot(bot.id)
        assert [e.id for e in every] == [e.id for e in entries]
        assert every[3].examples == ["ex 3"]
        page = await uow.knowledge.list_page(bot.id, after=None, limit=10)
        assert [e.id for e in page] == [e.id for e in entries[:10]]
        assert await uow.knowledge.get(uuid.uuid4(), entries[0].id) is None


async def test_knowledge_for_a_missing_bot_is_refused(uow_factory: UnitOfWorkFactory) -> None:
    with pytest.raises(IntegrityViolation):
        async with uow_factory() as uow:
            await uow.knowledge.add(KnowledgeEntryFactory(bot_id=uuid.uuid4()))
            await uow.commit()


async def _conversation_with_messages(
    uow_factory: UnitOfWorkFactory, bot_id: uuid.UUID, user_id: uuid.UUID, count: int
):  # type: ignore[no-untyped-def]
    conversation = ConversationFactory(bot_id=bot_id, user_id=user_id)
    messages = []
    for i in range(count):
        role = MessageRole.USER if i % 2 == 0 else MessageRole.ASSISTANT
        metadata = {} if role is MessageRole.USER else {"latency_ms": 10 * i, "fallback": i == 3}
        messages.append(
            conversation.append(
                message_id=uuid.uuid4(),
                role=role,
                content=f"m{i}",
                now=next_time(),
                metadata=metadata,
            )
        )
    async with uow_factory() as uow:
        await uow.conversations.add(conversation)
        for message in messages:
            await uow.messages.add(message)
        await uow.commit()
    return conversation, messages


async def test_deleting_a_bot_deletes_everything_under_it(uow_factory: UnitOfWorkFactory) -> None:
    owner, bot = await stored_owner_and_bot(uow_factory)
    entry = KnowledgeEntryFactory(bot_id=bot.id)
    key = BotApiKeyFactory(bot_id=bot.id)
    async with uow_factory() as uow:
        await uow.knowledge.add(entry)
        await uow.api_keys.add(key)
        await uow.commit()
    conversation, messages = await _conversation_with_messages(uow_factory, bot.id, owner.id, 2)
    async with uow_factory() as uow:
        await uow.feedback.add(
            FeedbackFactory(message_id=messages[1].id, conversation_id=conversation.id)
        )
        await uow.commit()
    async with uow_factory() as uow:
        loaded = await uow.bots.get(bot.id)
        assert loaded is not None
        await uow.bots.delete(loaded)
        await uow.commit()
    async with uow_factory() as uow:
        assert await uow.bots.get(bot.id) is None
        assert await uow.knowledge.get(bot.id, entry.id) is None
        assert await uow.api_keys.get_by_prefix(key.prefix) is None
        assert await uow.conversations.get(conversation.id) is None
        assert await uow.messages.get(messages[0].id) is None
        assert await uow.feedback.get(messages[1].id) is None
        assert await uow.users.get(owner.id) is not None


async def test_api_keys(uow_factory: UnitOfWorkFactory) -> None:
    _, bot = await stored_owner_and_bot(uow_factory)
    keys = [BotApiKeyFactory(bot_id=bot.id) for _ in range(2)]
    async with uow_factory() as uow:
        for key in keys:
            await uow.api_keys.add(key)
        await uow.commit()
    async with uow_factory() as uow:
        assert [k.id for k in await uow.api_keys.list_page(bot.id)] == [k.id for k in keys]
        found = await uow.api_keys.get_by_prefix(keys[1].prefix)
        assert found is not None
        found.record_use(next_time())
        await uow.commit()
    with pytest.raises(DuplicateKey):
        async with uow_factory() as uow:
            await uow.api_keys.add(BotApiKeyFactory(bot_id=bot.id, prefix=keys[0].prefix))
            await uow.commit()


async def test_refresh_token_families_revoke(uow_factory: UnitOfWorkFactory) -> None:
    user = UserFactory()
    family = uuid.uuid4()
    tokens = [RefreshTokenFactory(user_id=user.id, family_id=family) for _ in range(2)]
    other = RefreshTokenFactory(user_id=user.id)
    async with uow_factory() as uow:
        await uow.users.add(user)
        for token in [*tokens, other]:
            await uow.refresh_tokens.add(token)
        await uow.commit()
    now = next_time()
    async with uow_factory() as uow:
        await uow.refresh_tokens.revoke_family(family, now)
        await uow.commit()
    async with uow_factory() as uow:
        first = await uow.refresh_tokens.get_by_hash(tokens[0].token_hash)
        untouched = await uow.refresh_tokens.get_by_hash(other.token_hash)
        assert first is not None
        assert untouched is not None
        assert first.revoked_at == now
        assert untouched.revoked_at is None
        await uow.refresh_tokens.revoke_all_for_user(user.id, now)
        await uow.commit()
    async with uow_factory() as uow:
        untouched = await uow.refresh_tokens.get_by_hash(other.token_hash)
        assert untouched is not None
        assert not untouched.is_usable(now)


async def test_messages_history_and_recent(uow_factory: UnitOfWorkFactory) -> None:
    owner, bot = await stored_owner_and_bot(uow_factory)
    conversation, messages = await _conversation_with_messages(uow_factory, bot.id, owner.id, 7)
    async with uow_factory() as uow:
        page = await uow.messages.list_page(conversation.id, after_seq=2, limit=3)
        assert [m.seq for m in page] == [3, 4, 5]
        recent = await uow.messages.recent(conversation.id, 3)
        assert [m.seq for m in recent] == [5, 6, 7]
        loaded = await uow.conversations.get(conversation.id)
        assert loaded is not None
        assert loaded.message_count == 7
        again = await uow.messages.get(messages[1].id)
        assert again is not None
        assert again.metadata == {"latency_ms": 10, "fallback": False}


async def test_a_sequence_number_is_never_used_twice(uow_factory: UnitOfWorkFactory) -> None:
    owner, bot = await stored_owner_and_bot(uow_factory)
    conversation, _ = await _conversation_with_messages(uow_factory, bot.id, owner.id, 1)
    clash = ConversationFactory.build().append  # a message from elsewhere, forced to seq 1
    duplicate = clash(message_id=uuid.uuid4(), role=MessageRole.USER, content="x", now=next_time())
    duplicate.conversation_id = conversation.id
    with pytest.raises(DuplicateKey) as refused:
        async with uow_factory() as uow:
            await uow.messages.add(duplicate)
            await uow.commit()
    assert refused.value.resource == "messages"


async def test_concurrent_appends_stay_gap_free(uow_factory: UnitOfWorkFactory) -> None:
    owner, bot = await stored_owner_and_bot(uow_factory)
    conversation, _ = await _conversation_with_messages(uow_factory, bot.id, owner.id, 0)

    async def append(i: int) -> None:
        async with uow_factory() as uow:
            locked = await uow.conversations.get_for_update(conversation.id)
            assert locked is not None
            await asyncio.sleep(0)  # let the others run into the lock
            message = locked.append(
                message_id=uuid.uuid4(), role=MessageRole.USER, content=str(i), now=next_time()
            )
            await uow.messages.add(message)
            await uow.commit()

    await asyncio.gather(*(append(i) for i in range(10)))
    async with uow_factory() as uow:
        stored = await uow.messages.list_page(conversation.id, after_seq=0, limit=100)
        assert [m.seq for m in stored] == list(range(1, 11))
        loaded = await uow.conversations.get(conversation.id)
        assert loaded is not None
        assert loaded.message_count == 10


async def test_conversation_filters(uow_factory: UnitOfWorkFactory) -> None:
    owner, bot = await stored_owner_and_bot(uow_factory)
    mine, messages = await _conversation_with_messages(uow_factory, bot.id, owner.id, 2)
    keyed = ConversationFactory(bot_id=bot.id, user_id=None, external_user_id="ext-1")
    keyed.close(next_time())
    async with uow_factory() as uow:
        await uow.conversations.add(keyed)
        await uow.feedback.add(
            FeedbackFactory(message_id=messages[1].id, conversation_id=mine.id, rating=Rating.DOWN)
        )
        await uow.commit()

    async def ids(flt: ConversationFilter) -> list[uuid.UUID]:
        async with uow_factory() as uow:
            return [c.id for c in await uow.conversations.list_page(flt, after=None, limit=10)]

    assert await ids(ConversationFilter(bot_id=bot.id)) == [keyed.id, mine.id]
    assert await ids(ConversationFilter(user_id=owner.id)) == [mine.id]
    assert await ids(ConversationFilter(bot_id=bot.id, status=ConversationStatus.CLOSED)) == [
        keyed.id
    ]
    assert await ids(ConversationFilter(external_user_id="ext-1")) == [keyed.id]
    assert await ids(ConversationFilter(bot_id=bot.id, only_key_opened=True)) == [keyed.id]
    assert await ids(ConversationFilter(bot_id=bot.id, with_down_feedback=True)) == [mine.id]


async def test_idempotency_records(uow_factory: UnitOfWorkFactory) -> None:
    now = next_time()
    record = IdempotencyRecord("user:1", "key-1", "f" * 64, None, now)
    async with uow_factory() as uow:
        await uow.idempotency.add(record)
        await uow.commit()
    async with uow_factory() as uow:
        loaded = await uow.idempotency.get("user:1", "key-1")
        assert loaded is not None
        assert loaded.response is None
        loaded.response = {"status": 201, "body": {"ok": True}}
        await uow.commit()
    async with uow_factory() as uow:
        loaded = await uow.idempotency.get("user:1", "key-1")
        assert loaded is not None
        assert loaded.response == {"status": 201, "body": {"ok": True}}
        assert await uow.idempotency.get("user:2", "key-1") is None
    with pytest.raises(DuplicateKey) as refused:
        async with uow_factory() as uow:
            await uow.idempotency.add(IdempotencyRecord("user:1", "key-1", "g" * 64, None, now))
            await uow.commit()
    assert refused.value.resource == "idempotency_keys"
    async with uow_factory() as uow:
        assert await uow.idempotency.purge_older_than(now + timedelta(seconds=1)) == 1
        await uow.commit()


async def test_bot_stats(uow_factory: UnitOfWorkFactory) -> None:
    owner, bot = await stored_owner_and_bot(uow_factory)
    conversation, messages = await _conversation_with_messages(uow_factory, bot.id, owner.id, 6)
    async with uow_factory() as uow:
        await uow.feedback.add(
            FeedbackFactory(message_id=messages[1].id, conversation_id=conversation.id)
        )
        await uow.feedback.add(
            FeedbackFactory(
                message_id=messages[3].id, conversation_id=conversation.id, rating=Rating.DOWN
            )
        )
        await uow.commit()
    async with uow_factory() as uow:
        stats = await uow.stats.bot_stats(bot.id)
    assert (stats.conversations, stats.messages, stats.replies, stats.fallbacks) == (1, 6, 3, 1)
    assert (stats.feedback_up, stats.feedback_down) == (1, 1)
    assert sorted(stats.reply_latencies_ms) == [10, 30, 50]


async def test_a_bot_and_its_knowledge_added_in_one_unit_of_work(
    uow_factory: UnitOfWorkFactory,
) -> None:
    owner = UserFactory()
    bot = BotFactory(owner_id=owner.id)
    async with uow_factory() as uow:
        await uow.users.add(owner)
        await uow.bots.add(bot)
        await uow.knowledge.add_many([KnowledgeEntryFactory(bot_id=bot.id) for _ in range(3)])
        await uow.commit()
    async with uow_factory() as uow:
        assert len(await uow.knowledge.all_for_bot(bot.id)) == 3


async def test_read_only_units_of_work_read_and_refuse_to_commit(
    uow_factory: UnitOfWorkFactory,
) -> None:
    user = UserFactory()
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()
    async with uow_factory(read_only=True) as uow:
        loaded = await uow.users.get(user.id)
        assert loaded is not None
        assert loaded.email == user.email
        with pytest.raises(RuntimeError):
            await uow.commit()


async def test_read_only_reads_return_what_was_stored_field_for_field(
    uow_factory: UnitOfWorkFactory,
) -> None:
    """Read-only units of work may read by other means (SQLAlchemy: on the driver's own
    connection): the entities must be the ones a writing unit of work loads, types included."""
    owner, bot = await stored_owner_and_bot(
        uow_factory, engine_config={"top_k": 3, "threshold": 0.5}, status=BotStatus.PUBLISHED
    )
    conversation, _ = await _conversation_with_messages(uow_factory, bot.id, owner.id, 5)
    async with uow_factory() as uow:
        written = (
            await uow.users.get(owner.id),
            await uow.bots.get(bot.id),
            await uow.conversations.get(conversation.id),
            *await uow.messages.list_page(conversation.id, after_seq=1, limit=3),
        )
    async with uow_factory(read_only=True) as uow:
        read = (
            await uow.users.get(owner.id),
            await uow.bots.get(bot.id),
            await uow.conversations.get(conversation.id),
            *await uow.messages.list_page(conversation.id, after_seq=1, limit=3),
        )
        assert await uow.users.get(uuid.uuid4()) is None
        assert await uow.bots.get(uuid.uuid4()) is None
        assert await uow.conversations.get(uuid.uuid4()) is None
        assert await uow.messages.list_page(uuid.uuid4(), after_seq=0, limit=3) == []
    assert [type(entity) for entity in read] == [type(entity) for entity in written]
    for stored, loaded in zip(written, read, strict=True):
        expected, actual = dataclasses.asdict(stored), dataclasses.asdict(loaded)
        assert actual == expected
        # StrEnum members equal their strings, and naive datetimes compare unequal only to
        # aware ones: check the types themselves.
        assert {k: type(v) for k, v in actual.items()} == {k: type(v) for k, v in expected.items()}
    assert [message.seq for message in read[3:]] == [2, 3, 4]
    assert read[3].metadata == {"latency_ms": 10, "fallback": False}
    assert read[1].engine_config == {"top_k": 3, "threshold": 0.5}
    assert read[0].created_at.tzinfo is not None

"""Bot use cases on the in-memory adapters."""

from __future__ import annotations

import asyncio
import uuid
from functools import partial

import pytest

from adapters.engines.config import EngineConfigValidator
from adapters.memory import InMemoryDatabase, InMemoryUnitOfWork
from adapters.system import RandomIdGenerator
from application.actors import BotKeyActor, UserActor
from application.bots import BotApiKeys, BotKnowledge, BotLifecycle, BotSettings
from application.errors import AuthenticationFailed, Forbidden, NotFound, PreconditionFailed
from domain.bots import BotStatus, EngineKind, KnowledgeDraft
from domain.errors import InvalidTransition, InvalidValue
from domain.users import Role
from tests.factories import UserFactory
from tests.fakes import FixedClock

pytestmark = pytest.mark.unit


@pytest.fixture
def db() -> InMemoryDatabase:
    return InMemoryDatabase()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def ids() -> RandomIdGenerator:
    return RandomIdGenerator()


@pytest.fixture
def bots(db: InMemoryDatabase, clock: FixedClock, ids: RandomIdGenerator) -> BotLifecycle:
    return BotLifecycle(
        uow_factory=partial(InMemoryUnitOfWork, db),
        engine_rules=EngineConfigValidator(),
        clock=clock,
        ids=ids,
    )


@pytest.fixture
def knowledge(db: InMemoryDatabase, clock: FixedClock, ids: RandomIdGenerator) -> BotKnowledge:
    return BotKnowledge(uow_factory=partial(InMemoryUnitOfWork, db), clock=clock, ids=ids)


@pytest.fixture
def keys(db: InMemoryDatabase, clock: FixedClock, ids: RandomIdGenerator) -> BotApiKeys:
    return BotApiKeys(uow_factory=partial(InMemoryUnitOfWork, db), clock=clock, ids=ids)


async def _user(db: InMemoryDatabase, role: Role = Role.MEMBER) -> UserActor:
    user = UserFactory(role=role)
    async with InMemoryUnitOfWork(db) as uow:
        await uow.users.add(user)
        await uow.commit()
    return UserActor(user.id, role)


async def test_owner_admin_and_stranger(db: InMemoryDatabase, bots: BotLifecycle) -> None:
    owner, stranger, admin = await _user(db), await _user(db), await _user(db, Role.ADMIN)
    bot = await bots.create_bot(owner, BotSettings(name="Helper"))
    assert (await bots.get_bot(admin, bot.id)).id == bot.id
    with pytest.raises(NotFound):
        await bots.get_bot(stranger, bot.id)
    with pytest.raises(NotFound):
        await bots.get_bot(BotKeyActor(bot.id, uuid.uuid4()), bot.id)
    with pytest.raises(Forbidden):
        await bots.create_bot(BotKeyActor(bot.id, uuid.uuid4()), BotSettings(name="x"))
    assert [b.id for b in (await bots.list_bots(stranger)).items] == []
    assert [b.id for b in (await bots.list_bots(admin)).items] == [bot.id]


async def test_engine_config_is_checked_per_engine(
    db: InMemoryDatabase, bots: BotLifecycle
) -> None:
    owner = await _user(db)
    with pytest.raises(InvalidValue):
        await bots.create_bot(
            owner, BotSettings(name="x", engine=EngineKind.OPENAI, engine_config={})
        )
    bot = await bots.create_bot(owner, BotSettings(name="x", engine_config={"threshold": 0.3}))
    with pytest.raises(InvalidValue):  # switching engines re-checks the config
        await bots.update_bot(owner, bot.id, {"engine": EngineKind.OPENAI})


async def test_if_match_and_concurrent_writers(db: InMemoryDatabase, bots: BotLifecycle) -> None:
    owner = await _user(db)
    bot = await bots.create_bot(owner, BotSettings(name="Helper"))
    with pytest.raises(PreconditionFailed):
        await bots.update_bot(owner, bot.id, {"name": "x"}, expected_version=7)
    results = await asyncio.gather(
        *(bots.update_bot(owner, bot.id, {"name": f"n{i}"}, expected_version=1) for i in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, PreconditionFailed) for r in results if isinstance(r, Exception))


async def test_lifecycle(db: InMemoryDatabase, bots: BotLifecycle) -> None:
    owner = await _user(db)
    bot = await bots.create_bot(owner, BotSettings(name="Helper"))
    assert (await bots.publish_bot(owner, bot.id)).status is BotStatus.PUBLISHED
    assert (await bots.archive_bot(owner, bot.id)).status is BotStatus.ARCHIVED
    with pytest.raises(InvalidTransition):
        await bots.publish_bot(owner, bot.id)


async def test_knowledge_changes_move_the_revision(
    db: InMemoryDatabase, bots: BotLifecycle, knowledge: BotKnowledge
) -> None:
    owner = await _user(db)
    bot = await bots.create_bot(owner, BotSettings(name="Helper"))
    entry = await knowledge.add_entry(owner, bot.id, KnowledgeDraft("Q?", "A."))
    assert len(await knowledge.import_entries(owner, bot.id, [KnowledgeDraft("Q2", "A2")] * 3)) == 3
    await knowledge.update_entry(owner, bot.id, entry.id, {"answer": "B."}, expected_version=1)
    await knowledge.delete_entry(owner, bot.id, entry.id)
    reread = await bots.get_bot(owner, bot.id)
    assert (reread.knowledge_revision, reread.version) == (4, 1)
    assert len((await knowledge.list_entries(owner, bot.id)).items) == 3


async def test_bulk_import_is_all_or_nothing(
    db: InMemoryDatabase, bots: BotLifecycle, knowledge: BotKnowledge
) -> None:
    owner = await _user(db)
    bot = await bots.create_bot(owner, BotSettings(name="Helper"))
    drafts = [KnowledgeDraft(f"Q{i}", "A") for i in range(5)] + [KnowledgeDraft("Q", " ")]
    with pytest.raises(InvalidValue, match=r"entries\.5\.answer"):
        await knowledge.import_entries(owner, bot.id, drafts)
    assert (await knowledge.list_entries(owner, bot.id)).items == []
    with pytest.raises(InvalidValue):
        await knowledge.import_entries(owner, bot.id, [KnowledgeDraft("Q", "A")] * 5001)


async def test_api_keys_act_for_their_bot(
    db: InMemoryDatabase, bots: BotLifecycle, keys: BotApiKeys
) -> None:
    owner = await _user(db)
    bot = await bots.create_bot(owner, BotSettings(name="Helper"))
    issued = await keys.create_api_key(owner, bot.id, "site")
    assert issued.key.secret_hash != issued.secret
    actor = await keys.authenticate_api_key(issued.secret)
    assert actor == BotKeyActor(bot.id, issued.key.id)
    [listed] = await keys.list_api_keys(owner, bot.id)
    assert listed.last_used_at is not None
    for forged in [issued.secret + "x", "cbk_nothing", issued.key.prefix + "_secret"]:
        with pytest.raises(AuthenticationFailed):
            await keys.authenticate_api_key(forged)
    await keys.revoke_api_key(owner, bot.id, issued.key.id)
    with pytest.raises(AuthenticationFailed):
        await keys.authenticate_api_key(issued.secret)


async def test_deleting_a_bot_cascades(
    db: InMemoryDatabase, bots: BotLifecycle, knowledge: BotKnowledge, keys: BotApiKeys
) -> None:
    owner = await _user(db)
    bot = await bots.create_bot(owner, BotSettings(name="Helper"))
    await knowledge.add_entry(owner, bot.id, KnowledgeDraft("Q?", "A."))
    issued = await keys.create_api_key(owner, bot.id, "site")
    await bots.delete_bot(owner, bot.id)
    assert db.tables["knowledge_entries"] == {}
    assert db.tables["bot_api_keys"] == {}
    with pytest.raises(AuthenticationFailed):
        await keys.authenticate_api_key(issued.secret)

"""Identity use cases on the in-memory adapters."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest

from adapters.auth.jwt_tokens import JwtAccessTokenIssuer
from adapters.memory import InMemoryDatabase, InMemoryUnitOfWork
from adapters.system import RandomIdGenerator
from adapters.throttling import InMemoryAttemptCounter
from application.actors import UserActor
from application.errors import AuthenticationFailed, Conflict, Forbidden, Throttled
from application.identity import IdentityPolicy, IdentityService
from application.ports import HashingBusy
from domain.errors import InvalidValue
from domain.users import Role
from tests.fakes import FixedClock, cheap_hasher

pytestmark = pytest.mark.unit
PASSWORD = "correct horse battery"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def identity(clock: FixedClock) -> IdentityService:
    return IdentityService(
        uow_factory=partial(InMemoryUnitOfWork, InMemoryDatabase()),
        hasher=cheap_hasher(),
        tokens=JwtAccessTokenIssuer("k" * 40, issuer="test", audience="api", ttl_seconds=900),
        attempts=InMemoryAttemptCounter(monotonic=lambda: clock.now().timestamp()),
        clock=clock,
        ids=RandomIdGenerator(),
        policy=IdentityPolicy(
            login_max_failures=3,
            login_window_seconds=60,
            login_max_failures_per_address=6,
            register_max_per_address=2,
        ),
    )


async def test_register_normalises_and_refuses_duplicates(identity: IdentityService) -> None:
    user = await identity.register(" Ada@Example.COM ", PASSWORD, "Ada")
    assert user.email == "ada@example.com"
    assert user.password_hash.startswith("$argon2id$")
    with pytest.raises(Conflict):
        await identity.register("ADA@example.com", PASSWORD, "Ada again")


async def test_concurrent_registrations_of_one_email_make_one_account(
    identity: IdentityService,
) -> None:
    results = await asyncio.gather(
        *(identity.register("race@example.com", PASSWORD, "R") for _ in range(5)),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, Exception))


async def test_password_policy(identity: IdentityService) -> None:
    with pytest.raises(InvalidValue):
        await identity.register("a@example.com", "short", "A")


async def test_login_and_authenticate(identity: IdentityService) -> None:
    user = await identity.register("ada@example.com", PASSWORD, "Ada")
    pair = await identity.login("ADA@example.com", PASSWORD, "1.2.3.4")
    actor = await identity.authenticate(pair.access_token)
    assert actor == UserActor(user.id, Role.MEMBER)
    assert pair.expires_in == 900


async def test_unknown_email_and_wrong_password_fail_alike(identity: IdentityService) -> None:
    await identity.register("ada@example.com", PASSWORD, "Ada")
    with pytest.raises(AuthenticationFailed) as wrong_password:
        await identity.login("ada@example.com", "not the password", "1.1.1.1")
    with pytest.raises(AuthenticationFailed) as unknown:
        await identity.login("nobody@example.com", PASSWORD, "2.2.2.2")
    assert wrong_password.value.detail == unknown.value.detail


async def test_failed_logins_are_throttled_per_account(
    identity: IdentityService, clock: FixedClock
) -> None:
    await identity.register("ada@example.com", PASSWORD, "Ada")
    for i in range(3):
        with pytest.raises(AuthenticationFailed):
            await identity.login("ada@example.com", "wrong password", f"10.0.0.{i}")
    with pytest.raises(Throttled) as throttled:
        await identity.login("ada@example.com", PASSWORD, "10.0.0.99")
    assert 0 < throttled.value.retry_after_seconds <= 60
    clock.advance(seconds=61)
    await identity.login("ada@example.com", PASSWORD, "10.0.0.99")


async def test_failed_logins_are_throttled_per_address_at_a_looser_limit(
    identity: IdentityService,
) -> None:
    """Many people share an address (NAT, proxy, localhost): the per-account limit (3) on one
    account must not lock the others out; a spray over many accounts (6) does."""
    await identity.register("ada@example.com", PASSWORD, "Ada")
    for i in range(6):
        if i == 3:
            await identity.login("ada@example.com", PASSWORD, "6.6.6.6")
        with pytest.raises(AuthenticationFailed):
            await identity.login(f"user{i}@example.com", "wrong password", "6.6.6.6")
    with pytest.raises(Throttled):
        await identity.login("ada@example.com", PASSWORD, "6.6.6.6")
    await identity.login("ada@example.com", PASSWORD, "7.7.7.7")


async def test_correct_passwords_are_not_counted_as_failures(identity: IdentityService) -> None:
    await identity.register("ada@example.com", PASSWORD, "Ada")
    for _ in range(10):
        await identity.login("ada@example.com", PASSWORD, "6.6.6.6")
    for i in range(6):
        with pytest.raises(AuthenticationFailed):
            await identity.login(f"user{i}@example.com", "wrong password", "6.6.6.6")


async def test_registrations_are_limited_per_address_but_not_from_the_command_line(
    identity: IdentityService,
) -> None:
    for i in range(2):
        await identity.register(f"r{i}@example.com", PASSWORD, "R", client_address="5.5.5.5")
    with pytest.raises(Throttled) as throttled:
        await identity.register("r2@example.com", PASSWORD, "R", client_address="5.5.5.5")
    assert 0 < throttled.value.retry_after_seconds <= 3600
    await identity.register("r2@example.com", PASSWORD, "R", client_address="5.5.5.6")
    await identity.create_admin("admin@example.com", PASSWORD, "Admin")


async def test_a_registration_shed_for_busy_hashing_does_not_use_up_the_limit(
    identity: IdentityService, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def busy(password: str, *, wait: bool = True) -> str:
        raise HashingBusy

    hasher = identity._hasher
    real_hash = hasher.hash
    monkeypatch.setattr(hasher, "hash", busy)
    for _ in range(5):
        with pytest.raises(Throttled):
            await identity.register("r@example.com", PASSWORD, "R", client_address="5.5.5.5")
    monkeypatch.setattr(hasher, "hash", real_hash)
    for i in range(2):
        await identity.register(f"r{i}@example.com", PASSWORD, "R", client_address="5.5.5.5")


async def test_refresh_rotates_and_reuse_revokes_the_family(identity: IdentityService) -> None:
    await identity.register("ada@example.com", PASSWORD, "Ada")
    first = await identity.login("ada@example.com", PASSWORD, "1.1.1.1")
    second = await identity.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    with pytest.raises(AuthenticationFailed):
        await identity.refresh(first.refresh_token)  # reuse: the family is revoked
    with pytest.raises(AuthenticationFailed):
        await identity.refresh(second.refresh_token)  # ... including the newest token
    other_session = await identity.login("ada@example.com", PASSWORD, "1.1.1.1")
    await identity.refresh(other_session.refresh_token)  # other families are untouched


async def test_concurrent_refreshes_with_one_token_yield_one_pair(
    identity: IdentityService,
) -> None:
    await identity.register("ada@example.com", PASSWORD, "Ada")
    pair = await identity.login("ada@example.com", PASSWORD, "1.1.1.1")
    results = await asyncio.gather(
        *(identity.refresh(pair.refresh_token) for _ in range(3)), return_exceptions=True
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1


async def test_refresh_tokens_expire(identity: IdentityService, clock: FixedClock) -> None:
    await identity.register("ada@example.com", PASSWORD, "Ada")
    pair = await identity.login("ada@example.com", PASSWORD, "1.1.1.1")
    clock.advance(days=31)
    with pytest.raises(AuthenticationFailed):
        await identity.refresh(pair.refresh_token)


async def test_logout_and_password_change_revoke(identity: IdentityService) -> None:
    user = await identity.register("ada@example.com", PASSWORD, "Ada")
    pair = await identity.login("ada@example.com", PASSWORD, "1.1.1.1")
    await identity.logout(pair.refresh_token)
    await identity.logout(pair.refresh_token)  # twice is fine
    with pytest.raises(AuthenticationFailed):
        await identity.refresh(pair.refresh_token)

    pair = await identity.login("ada@example.com", PASSWORD, "1.1.1.1")
    actor = UserActor(user.id, Role.MEMBER)
    with pytest.raises(InvalidValue):
        await identity.change_password(actor, "wrong current", "a new password")
    await identity.change_password(actor, PASSWORD, "a new password")
    with pytest.raises(AuthenticationFailed):
        await identity.refresh(pair.refresh_token)
    with pytest.raises(AuthenticationFailed):
        await identity.login("ada@example.com", PASSWORD, "1.1.1.2")
    await identity.login("ada@example.com", "a new password", "1.1.1.2")


async def test_admin_management(identity: IdentityService, clock: FixedClock) -> None:
    admin = await identity.create_admin("root@example.com", PASSWORD, "Root")
    clock.advance(seconds=1)
    member = await identity.register("ada@example.com", PASSWORD, "Ada")
    admin_actor = UserActor(admin.id, Role.ADMIN)
    member_actor = UserActor(member.id, Role.MEMBER)
    with pytest.raises(Forbidden):
        await identity.list_users(member_actor)
    page = await identity.list_users(admin_actor, limit=1)
    assert [u.id for u in page.items] == [admin.id]
    assert page.next_cursor is not None
    rest = await identity.list_users(admin_actor, limit=1, cursor=page.next_cursor)
    assert [u.id for u in rest.items] == [member.id]
    assert rest.next_cursor is None

    pair = await identity.login("ada@example.com", PASSWORD, "1.1.1.1")
    await identity.update_user(admin_actor, member.id, is_active=False)
    with pytest.raises(AuthenticationFailed):
        await identity.authenticate(pair.access_token)  # at once, before the token expires
    with pytest.raises(AuthenticationFailed):
        await identity.refresh(pair.refresh_token)
    with pytest.raises(Conflict):
        await identity.update_user(admin_actor, admin.id, role=Role.MEMBER)  # the last admin
    promoted = await identity.update_user(admin_actor, member.id, role=Role.ADMIN, is_active=True)
    assert promoted.role is Role.ADMIN
    await identity.update_user(admin_actor, admin.id, role=Role.MEMBER)  # no longer the last


async def test_rename_me(identity: IdentityService) -> None:
    user = await identity.register("ada@example.com", PASSWORD, "Ada")
    renamed = await identity.update_me(UserActor(user.id, Role.MEMBER), "  Countess  ")
    assert renamed.display_name == "Countess"


async def test_unknown_email_still_spends_one_verification(clock: FixedClock) -> None:
    """Timing equality by construction: both failure paths run exactly one Argon2 verify."""
    hasher = cheap_hasher()
    calls: list[str] = []
    real_verify, real_dummy = hasher.verify, hasher.verify_dummy

    async def verify(password: str, password_hash: str) -> tuple[bool, str | None]:
        calls.append("verify")
        return await real_verify(password, password_hash)

    async def verify_dummy(password: str) -> None:
        calls.append("dummy")
        await real_dummy(password)

    hasher.verify, hasher.verify_dummy = verify, verify_dummy  # type: ignore[method-assign]
    service = IdentityService(
        uow_factory=partial(InMemoryUnitOfWork, InMemoryDatabase()),
        hasher=hasher,
        tokens=JwtAccessTokenIssuer("k" * 40, issuer="test", audience="api", ttl_seconds=900),
        attempts=InMemoryAttemptCounter(),
        clock=clock,
        ids=RandomIdGenerator(),
    )
    await service.register("ada@example.com", PASSWORD, "Ada")
    for email in ["ada@example.com", "nobody@example.com"]:
        calls.clear()
        with pytest.raises(AuthenticationFailed):
            await service.login(email, "wrong password!", "1.1.1.1")
        assert calls.count("verify") == 1  # the dummy path verifies against a dummy hash

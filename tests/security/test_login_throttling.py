"""Sign-in and registration throttling (issue 12), through the real HTTP app.

Attempts are counted before Argon2 runs, so concurrency cannot slip past the limit; the per-address
limit is far looser than the per-account one; X-Forwarded-For counts only from trusted proxies;
registrations are limited per address and shed when the hashing capacity is taken.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Awaitable
from ipaddress import ip_network
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from entrypoints.api.app import create_app
from entrypoints.bootstrap import build_container
from entrypoints.settings import Settings
from tests.api.conftest import PASSWORD, client_for, make_app, make_settings
from tests.databases import IN_CI

pytestmark = pytest.mark.security
TOKEN, REGISTER = "/api/v1/auth/token", "/api/v1/auth/register"
REDIS_URL = "redis://127.0.0.1:6379/15"
WRONG = "not the password"


async def register(
    client: httpx.AsyncClient, email: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    payload = {"email": email, "password": PASSWORD, "display_name": "Someone"}
    return await client.post(REGISTER, json=payload, headers=headers)


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post(TOKEN, data={"username": email, "password": password}, headers=headers)


def forwarded_from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def random_address() -> str:
    return f"198.18.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"


@pytest.fixture
def redis_available() -> None:
    client = SyncRedis.from_url(REDIS_URL)
    try:
        client.ping()
    except RedisConnectionError as error:
        if IN_CI:
            pytest.fail(f"Redis is required in CI: {error}")
        pytest.skip(f"Redis is down: {error}")
    finally:
        client.close()


@pytest.mark.parametrize("counters", ["memory", "redis"])
async def test_concurrent_wrong_passwords_cannot_outrun_the_account_limit(
    counters: str, request: pytest.FixtureRequest
) -> None:
    # The test client connects from 127.0.0.1; as a trusted proxy it lets each run use an address
    # of its own, because Redis counters outlive the test and are shared with other runs.
    overrides: dict[str, Any] = {
        "trusted_proxies": "127.0.0.1",
        "register_max_per_address": 1_000_000,  # registrations from 127.0.0.1 outlive runs too
    }
    if counters == "redis":
        request.getfixturevalue("redis_available")
        overrides["redis_url"] = REDIS_URL
    email, address = f"ada-{uuid.uuid4().hex[:8]}@example.com", random_address()
    async for client in client_for(make_app("memory://", **overrides)):
        assert (await register(client, email)).status_code == 201
        answers = await asyncio.gather(
            *(sign_in(client, email, WRONG, forwarded_from(address)) for _ in range(30))
        )
    statuses = [answer.status_code for answer in answers]
    assert statuses.count(401) <= 5  # login_max_failures
    assert statuses.count(429) == 30 - statuses.count(401)
    assert all(0 < int(a.headers["retry-after"]) <= 900 for a in answers if a.status_code == 429)
    if counters == "redis":
        cleanup = Redis.from_url(REDIS_URL)
        prefix = "chatbots:attempts:login:"
        await cleanup.delete(f"{prefix}account:{email}", f"{prefix}address:{address}")
        await cleanup.aclose()


async def test_failures_on_one_account_do_not_lock_out_another_on_the_same_address() -> None:
    async for client in client_for(make_app("memory://")):
        for email in ["a@example.com", "b@example.com"]:
            assert (await register(client, email)).status_code == 201
        statuses = [(await sign_in(client, "a@example.com", WRONG)).status_code for _ in range(7)]
        assert statuses == [401] * 5 + [429] * 2
        assert (await sign_in(client, "a@example.com", PASSWORD)).status_code == 429
        assert (await sign_in(client, "b@example.com", PASSWORD)).status_code == 200


async def test_a_spray_over_many_accounts_is_throttled_per_address() -> None:
    async for client in client_for(make_app("memory://", login_max_failures_per_address=10)):
        assert (await register(client, "victim@example.com")).status_code == 201
        answers = await asyncio.gather(
            *(sign_in(client, f"user{i}@example.com", WRONG) for i in range(30))
        )
        assert [a.status_code for a in answers].count(401) == 10
        throttled = await sign_in(client, "victim@example.com", PASSWORD)
        assert throttled.status_code == 429
        assert 0 < int(throttled.headers["retry-after"]) <= 900


def test_the_client_address_comes_from_trusted_proxies_only() -> None:
    from entrypoints.api.forwarded import resolve_client_address as resolve

    proxies = (ip_network("10.0.0.0/8"), ip_network("192.0.2.1/32"), ip_network("fd00::/8"))
    # An untrusted peer's header is whatever the caller wrote: ignored.
    assert resolve("203.0.113.9", ["198.51.100.7"], proxies) == "203.0.113.9"
    assert resolve("10.0.0.5", ["198.51.100.7"], ()) == "10.0.0.5"
    # Behind trusted proxies: the right-most hop that is not one; entries left of it are spoofable.
    assert resolve("10.0.0.5", ["6.6.6.6, 198.51.100.7"], proxies) == "198.51.100.7"
    assert resolve("10.0.0.5", ["6.6.6.6, 198.51.100.7, 192.0.2.1"], proxies) == "198.51.100.7"
    assert resolve("10.0.0.5", ["6.6.6.6, 198.51.100.7", "10.1.1.1"], proxies) == "198.51.100.7"
    assert resolve("fd00::1", ["2001:db8::7, fd00::2"], proxies) == "2001:db8::7"
    assert resolve("10.0.0.5", ["198.51.100.7:4711"], proxies) == "198.51.100.7"
    assert resolve("10.0.0.5", ["[2001:db8::7]:4711"], proxies) == "2001:db8::7"
    assert resolve("::ffff:10.0.0.5", ["::ffff:198.51.100.7"], proxies) == "198.51.100.7"
    # Every hop trusted, or no header: the farthest trusted hop.
    assert resolve("10.0.0.5", ["10.9.9.9, 192.0.2.1"], proxies) == "10.9.9.9"
    assert resolve("10.0.0.5", [], proxies) == "10.0.0.5"
    # A hop a trusted proxy could not name: the proxy that reported it.
    assert resolve("10.0.0.5", ["198.51.100.7, unknown, 10.1.1.1"], proxies) == "10.1.1.1"
    assert resolve(None, [], proxies) == "unknown"


async def test_the_api_honours_x_forwarded_for_only_from_a_trusted_peer() -> None:
    untrusted = make_app("memory://", login_max_failures_per_address=3)
    async for client in client_for(untrusted):
        statuses = [
            (await sign_in(client, f"u{i}@example.com", WRONG, forwarded_from(f"198.51.100.{i}")))
            for i in range(4)
        ]
        assert [s.status_code for s in statuses] == [401, 401, 401, 429]
    trusted = make_app("memory://", login_max_failures_per_address=3, trusted_proxies="127.0.0.1")
    async for client in client_for(trusted):
        for i in range(4):
            forwarded = forwarded_from(f"198.51.100.{i}")
            assert (await sign_in(client, f"u{i}@example.com", WRONG, forwarded)).status_code == 401
        one = forwarded_from("203.0.113.1")
        statuses = [(await sign_in(client, f"v{i}@example.com", WRONG, one)) for i in range(3)]
        assert [s.status_code for s in statuses] == [401] * 3
        spoofed = forwarded_from("192.0.2.99, 203.0.113.1")
        assert (await sign_in(client, "w@example.com", WRONG, spoofed)).status_code == 429


def test_trusted_proxies_are_a_comma_separated_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATBOTS_TRUSTED_PROXIES", raising=False)
    assert Settings(_env_file=None).trusted_proxies == ()  # type: ignore[call-arg]
    monkeypatch.setenv("CHATBOTS_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1,2001:db8::/32")
    assert Settings(_env_file=None).trusted_proxies == (  # type: ignore[call-arg]
        ip_network("10.0.0.0/8"),
        ip_network("192.0.2.1/32"),
        ip_network("2001:db8::/32"),
    )
    monkeypatch.setenv("CHATBOTS_TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal")
    with pytest.raises(ValidationError, match="trusted_proxies"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_uvicorn_does_not_rewrite_the_client_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """One place decides which X-Forwarded-For to believe: uvicorn's default would trust it
    from 127.0.0.1 (or FORWARDED_ALLOW_IPS) before the app ever saw the real peer."""
    import uvicorn

    from entrypoints.cli import main

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    assert main(["serve"]) == 0
    assert calls[0]["proxy_headers"] is False


async def test_registrations_are_limited_per_address() -> None:
    async for client in client_for(make_app("memory://", register_max_per_address=3)):
        answers = await asyncio.gather(*(register(client, f"r{i}@example.com") for i in range(10)))
        statuses = [answer.status_code for answer in answers]
        assert statuses.count(201) == 3
        assert statuses.count(429) == 7
        assert all(
            0 < int(a.headers["retry-after"]) <= 3600 for a in answers if a.status_code == 429
        )


async def timed(request: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = await request
    return response, time.perf_counter() - started


async def test_a_registration_flood_is_shed_while_a_sign_in_waits_its_turn() -> None:
    settings = make_settings(
        "memory://", password_hash_queue_limit=2, register_max_per_address=1000
    )
    app = create_app(build_container(settings))  # the real Argon2 cost: ~0.15 s a hash
    async for client in client_for(app):
        assert (await register(client, "admin@example.com")).status_code == 201
        *registrations, (signed_in, _) = await asyncio.gather(
            *(timed(register(client, f"flood{i}@example.com")) for i in range(8)),
            timed(sign_in(client, "admin@example.com", PASSWORD)),
        )
    assert signed_in.status_code == 200
    refused = [elapsed for r, elapsed in registrations if r.status_code == 429]
    created = [elapsed for r, elapsed in registrations if r.status_code == 201]
    assert refused
    assert created
    assert all(int(r.headers["retry-after"]) > 0 for r, _ in registrations if r.status_code == 429)
    assert max(refused) < min(created)  # refused at once, without waiting for a hash

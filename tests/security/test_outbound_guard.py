"""The guarded client for member-chosen URLs: which addresses it reaches, without any network.

Addresses are judged directly; names go through a resolver the tests inject, and the backend
below the guard is a recorder, so what gets connected to is visible.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Iterable

import httpcore
import httpx
import pytest

from adapters.outbound import (
    GuardedNetworkBackend,
    OutboundAddressRefused,
    environment_proxies,
    guarded_client,
    resolve_host,
    with_network_backend,
)
from adapters.outbound_policy import AddressKind, IPAddress, OutboundPolicy, address_kind

pytestmark = pytest.mark.security

STRICT = OutboundPolicy()
PRIVATE_OK = OutboundPolicy(allow_private=True)

ADDRESSES = [
    ("127.0.0.1", AddressKind.LOOPBACK),
    ("127.8.9.10", AddressKind.LOOPBACK),
    ("::1", AddressKind.LOOPBACK),
    ("10.0.0.1", AddressKind.PRIVATE),
    ("172.16.5.4", AddressKind.PRIVATE),
    ("192.168.1.1", AddressKind.PRIVATE),
    ("100.64.0.1", AddressKind.PRIVATE),  # carrier-grade NAT
    ("fc00::1", AddressKind.PRIVATE),
    ("fd12:3456::1", AddressKind.PRIVATE),
    ("169.254.169.254", AddressKind.LINK_LOCAL),  # cloud metadata
    ("169.254.1.1", AddressKind.LINK_LOCAL),
    ("fe80::1", AddressKind.LINK_LOCAL),
    ("0.0.0.0", AddressKind.UNSPECIFIED),
    ("0.1.2.3", AddressKind.UNSPECIFIED),
    ("::", AddressKind.UNSPECIFIED),
    ("224.0.0.1", AddressKind.MULTICAST),
    ("ff02::1", AddressKind.MULTICAST),
    ("240.0.0.1", AddressKind.RESERVED),
    ("255.255.255.255", AddressKind.RESERVED),
    ("192.0.2.1", AddressKind.RESERVED),  # documentation
    ("198.18.0.1", AddressKind.RESERVED),  # benchmarking
    ("192.0.0.8", AddressKind.RESERVED),
    ("2001:db8::1", AddressKind.RESERVED),
    # IPv6 forms that end up at an IPv4 host are judged by that host
    ("::ffff:127.0.0.1", AddressKind.LOOPBACK),
    ("::ffff:10.0.0.1", AddressKind.PRIVATE),
    ("::ffff:169.254.169.254", AddressKind.LINK_LOCAL),
    ("::ffff:0.0.0.0", AddressKind.UNSPECIFIED),
    ("64:ff9b::7f00:1", AddressKind.LOOPBACK),  # NAT64 of 127.0.0.1
    ("2002:a9fe:a9fe::1", AddressKind.LINK_LOCAL),  # 6to4 of 169.254.169.254
    ("8.8.8.8", AddressKind.PUBLIC),
    ("93.184.216.34", AddressKind.PUBLIC),
    ("2606:4700:4700::1111", AddressKind.PUBLIC),
    ("::ffff:8.8.8.8", AddressKind.PUBLIC),
]


@pytest.mark.parametrize(("address", "kind"), ADDRESSES, ids=[a for a, _ in ADDRESSES])
def test_every_address_class_is_recognised(address: str, kind: AddressKind) -> None:
    parsed = ipaddress.ip_address(address)
    assert address_kind(parsed) is kind
    assert STRICT.allows_address(parsed) is (kind is AddressKind.PUBLIC)


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("10.1.2.3", True),
        ("100.64.0.1", True),
        ("fd00::1", True),
        ("::ffff:192.168.0.1", True),
        ("169.254.169.254", False),  # metadata stays closed: list it by name to reach it
        ("fe80::1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("8.8.8.8", True),
    ],
)
def test_allow_private_opens_the_operators_networks_only(address: str, allowed: bool) -> None:
    assert PRIVATE_OK.allows_address(ipaddress.ip_address(address)) is allowed


def test_listed_hosts_match_by_name_and_by_name_and_port_case_insensitively() -> None:
    policy = OutboundPolicy.of(
        allow_private=False,
        allowed_hosts=["Ollama", "models.internal:8080", "10.0.0.7", "[::1]:11434", "0:0::2"],
    )
    assert policy.allows_host("ollama", 11434)
    assert policy.allows_host("OLLAMA", 1)
    assert policy.allows_host("ollama.", 80)
    assert policy.allows_host("Models.Internal", 8080)
    assert not policy.allows_host("models.internal", 8081)
    assert policy.allows_host("10.0.0.7", 443)
    assert policy.allows_host("::1", 11434)
    assert not policy.allows_host("::1", 11435)
    assert policy.allows_host("::2", 5)
    assert not policy.allows_host("ollama.example.com", 11434)
    assert not policy.allows_host("10.0.0.8", 443)


@pytest.mark.parametrize("entry", ["http://ollama", "ollama/v1", "user@ollama", "ollama:port"])
def test_a_listed_host_must_be_a_host_or_host_and_port(entry: str) -> None:
    with pytest.raises(ValueError, match="not a host or host:port"):
        OutboundPolicy.of(allow_private=False, allowed_hosts=[entry])


# --- the network backend: resolve, check every address, connect to a checked one -------------


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Stands below the guard and records where it was asked to connect."""

    def __init__(self) -> None:
        self.connected: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connected.append((host, port))
        return httpcore.AsyncMockStream([])


class FixedResolver:
    """A DNS that answers from a table, and counts how often it is asked."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"no such host: {host}")
        return [ipaddress.ip_address(address) for address in self.table[host]]


DNS = {
    "localhost": ["127.0.0.1", "::1"],
    "rebound.example": ["127.0.0.1"],
    "metadata.example": ["169.254.169.254"],
    "mixed.example": ["93.184.216.34", "10.0.0.1"],
    "api.example": ["93.184.216.34", "2606:2800:220:1::1"],
    "lan.example": ["192.168.1.20"],
}


Guarded = tuple[GuardedNetworkBackend, RecordingBackend, FixedResolver]


def guarded(policy: OutboundPolicy) -> Guarded:
    inner, resolver = RecordingBackend(), FixedResolver(DNS)
    return GuardedNetworkBackend(policy, resolver=resolver, inner=inner), inner, resolver


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "rebound.example",
        "metadata.example",
        "mixed.example",  # one refused address refuses the name
        "lan.example",
        "127.0.0.1",
        "::1",
        "::ffff:127.0.0.1",
        "169.254.169.254",
        "10.0.0.1",
    ],
)
async def test_refused_hosts_are_never_connected_to(host: str) -> None:
    backend, inner, _ = guarded(STRICT)
    with pytest.raises(OutboundAddressRefused):
        await backend.connect_tcp(host, 80, timeout=1)
    assert inner.connected == []


async def test_a_public_name_is_connected_to_by_the_address_that_was_checked() -> None:
    backend, inner, resolver = guarded(STRICT)
    await backend.connect_tcp("api.example", 443, timeout=1)
    # The inner backend never sees the name, so it cannot resolve it again to something else.
    assert inner.connected == [("93.184.216.34", 443)]
    assert resolver.asked == ["api.example"]


async def test_a_literal_public_ip_needs_no_resolver() -> None:
    backend, inner, resolver = guarded(STRICT)
    await backend.connect_tcp("8.8.8.8", 443, timeout=1)
    assert inner.connected == [("8.8.8.8", 443)]
    assert resolver.asked == []


async def test_the_flag_allows_a_name_on_the_private_network() -> None:
    backend, inner, _ = guarded(PRIVATE_OK)
    await backend.connect_tcp("localhost", 11434, timeout=1)
    assert inner.connected == [("127.0.0.1", 11434)]
    with pytest.raises(OutboundAddressRefused):
        await backend.connect_tcp("metadata.example", 80, timeout=1)


async def test_a_listed_host_is_reached_whatever_it_resolves_to() -> None:
    by_name = OutboundPolicy.of(allow_private=False, allowed_hosts=["localhost"])
    backend, inner, _ = guarded(by_name)
    await backend.connect_tcp("localhost", 11434, timeout=1)
    assert inner.connected == [("localhost", 11434)]

    by_port = OutboundPolicy.of(allow_private=False, allowed_hosts=["127.0.0.1:11434"])
    backend, inner, _ = guarded(by_port)
    await backend.connect_tcp("127.0.0.1", 11434, timeout=1)
    with pytest.raises(OutboundAddressRefused):
        await backend.connect_tcp("127.0.0.1", 22, timeout=1)
    assert inner.connected == [("127.0.0.1", 11434)]


async def test_a_name_that_does_not_resolve_is_a_plain_connect_error() -> None:
    backend, inner, _ = guarded(STRICT)
    with pytest.raises(httpcore.ConnectError) as raised:
        await backend.connect_tcp("nowhere.example", 80, timeout=1)
    assert not isinstance(raised.value, OutboundAddressRefused)
    assert inner.connected == []


async def test_unix_sockets_are_refused() -> None:
    backend, _, _ = guarded(PRIVATE_OK)
    with pytest.raises(OutboundAddressRefused):
        await backend.connect_unix_socket("/var/run/docker.sock")


@pytest.mark.parametrize("spelling", ["2130706433", "0x7f.0.0.1", "0177.0.0.1", "127.1"])
async def test_other_spellings_of_loopback_resolve_to_loopback(spelling: str) -> None:
    """The system resolver reads these numerically (no DNS query), and the check sees 127.0.0.1."""
    addresses = await resolve_host(spelling, 80)
    assert [str(address) for address in addresses] == ["127.0.0.1"]
    backend = GuardedNetworkBackend(STRICT, inner=RecordingBackend())
    with pytest.raises(OutboundAddressRefused):
        await backend.connect_tcp(spelling, 80, timeout=1)


# --- the client: httpx goes through the guard, proxies stay usable ----------------------------


def client(policy: OutboundPolicy, **options: object) -> httpx.AsyncClient:
    return guarded_client(
        policy,
        timeout=httpx.Timeout(2.0),
        limits=httpx.Limits(max_connections=2),
        resolver=FixedResolver(DNS),
        **options,  # type: ignore[arg-type]
    )


async def test_the_client_uses_the_guarded_pool_and_does_not_follow_redirects() -> None:
    """Pins `with_network_backend`: had httpx stopped reading `_pool`, the request would go
    through httpx's own pool and fail to resolve instead of being refused."""
    async with client(STRICT, proxies={}) as http:
        assert http.follow_redirects is False
        with pytest.raises(OutboundAddressRefused):
            await http.get("http://rebound.example/v1/models")


def test_with_network_backend_refuses_a_transport_without_a_pool() -> None:
    transport = httpx.AsyncHTTPTransport()
    del transport._pool
    with pytest.raises(RuntimeError, match="_pool"):
        with_network_backend(transport, httpcore.AsyncConnectionPool())


def test_environment_proxies_read_like_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pins the one private httpx function used: the proxy map from the environment."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.corp.example")
    assert environment_proxies() == {
        "https://": "http://proxy.internal:3128",
        "all://localhost": None,
        "all://*.corp.example": None,
    }


@pytest.fixture
async def forward_proxy() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A forward proxy on 127.0.0.1 (the operator's, so loopback is fine) that answers itself."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readline())
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", seen


async def test_an_operators_proxy_is_used_but_the_target_is_still_checked(
    forward_proxy: tuple[str, list[bytes]],
) -> None:
    proxy_url, seen = forward_proxy
    async with client(STRICT, proxies={"all://": proxy_url}) as http:
        answer = await http.get("http://api.example/v1/models")
        assert answer.text == "ok"
        assert seen == [b"GET http://api.example/v1/models HTTP/1.1\r\n"]

        for target in ("http://rebound.example/", "http://169.254.169.254/latest/meta-data/"):
            with pytest.raises(OutboundAddressRefused):
                await http.get(target)
    assert len(seen) == 1  # the refused targets never reached the proxy

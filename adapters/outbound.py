"""The one guarded HTTP client for URLs a member chooses: chat upstreams, embeddings, webhooks.

Whoever may name a URL could otherwise make the server connect wherever it can reach: its own
loopback ports, the private network, the cloud metadata service. The guard sits where the
connection is made, not where the URL is read: a network backend under httpx resolves the host
itself, checks every address it gets, and connects to an address it checked. So a name that
resolves to a public address when a bot is saved and to 127.0.0.1 a moment later (DNS
rebinding) gets nowhere, and literal IPs in any spelling (`2130706433`, `0x7f.1`,
`[::ffff:127.0.0.1]`) are judged by the address they resolve to. Redirects are never followed.

Proxies from the environment (`HTTPS_PROXY`, `NO_PROXY`, ...) are honoured: the connection to
the operator's proxy is not checked, but the target is, by resolving its name here before the
request goes to the proxy. The proxy resolves again on its own, so behind a proxy its egress
policy has the last word; a target this server cannot resolve is refused unless it is listed.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Final

import anyio
import httpcore
import httpx

from adapters.outbound_policy import IPAddress, OutboundPolicy, address_kind

logger = logging.getLogger(__name__)

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

_DEFAULT_PORTS: Final = {b"http": 80, b"https": 443}


class OutboundAddressRefused(httpx.ConnectError):
    """The host is, or resolves to, an address the operator does not allow.

    A ConnectError, since no connection was made; callers that tell it apart answer with one
    fixed message, so a member learns nothing about what lives at a private address.
    """


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address the system resolver gives for `host`, without duplicates, in its order."""
    found = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for family, *_, sockaddr in found:
        if family in (socket.AF_INET, socket.AF_INET6):
            address = ipaddress.ip_address(sockaddr[0])
            if address not in addresses:
                addresses.append(address)
    return addresses


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the policy allows (httpcore's public backend interface)."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        resolver: Resolver = resolve_host,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        self._resolve = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def checked_addresses(self, host: str, port: int) -> list[IPAddress] | None:
        """The addresses to connect to, all allowed; None when the operator listed the host.

        Raises OutboundAddressRefused if any address is refused (a name with one public and
        one private address is refused: which one a connection would use is not ours to pick),
        httpcore.ConnectError if the name does not resolve.
        """
        if self._policy.allows_host(host, port):
            return None
        try:
            addresses = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                addresses = await self._resolve(host, port)
            except OSError as error:
                raise httpcore.ConnectError(f"cannot resolve {host}: {error}") from None
        refused = [address for address in addresses if not self._policy.allows_address(address)]
        if refused or not addresses:
            kinds = ", ".join(sorted({address_kind(address) for address in refused}))
            raise OutboundAddressRefused(f"{host} is or resolves to a refused address ({kinds})")
        return addresses

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await self.checked_addresses(host, port)
                if addresses is None:
                    return await self._inner.connect_tcp(
                        host, port, timeout, local_address, socket_options
                    )
                failure = httpcore.ConnectError(f"no address of {host} to connect to")
                for address in addresses:
                    try:
                        return await self._inner.connect_tcp(
                            str(address), port, timeout, local_address, socket_options
                        )
                    except httpcore.ConnectError as error:
                        failure = error  # the next address may answer
                raise failure
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"connecting to {host} timed out") from None

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise OutboundAddressRefused("unix sockets are never reached from a member's URL")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _ProxiedTargetCheck(httpx.AsyncBaseTransport):
    """Checks the target of a request that an operator's proxy will carry."""

    def __init__(self, proxied: httpx.AsyncBaseTransport, backend: GuardedNetworkBackend) -> None:
        self._proxied = proxied
        self._backend = backend

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        port = url.port or _DEFAULT_PORTS.get(url.raw_scheme, 443)
        connect_timeout = request.extensions.get("timeout", {}).get("connect")
        try:
            with anyio.fail_after(connect_timeout):
                await self._backend.checked_addresses(url.raw_host.decode("ascii"), port)
        except TimeoutError:
            raise httpx.ConnectTimeout("resolving the target timed out", request=request) from None
        except httpcore.ConnectError as error:
            raise httpx.ConnectError(str(error), request=request) from None
        return await self._proxied.handle_async_request(request)

    async def aclose(self) -> None:
        await self._proxied.aclose()


def with_network_backend(
    transport: httpx.AsyncHTTPTransport, pool: httpcore.AsyncConnectionPool
) -> httpx.AsyncHTTPTransport:
    """Puts `pool` under `transport`: the one touch of an httpx private attribute here.

    httpx 0.28 takes no network backend, but its transport maps httpcore's errors to httpx's
    and wraps the streams, which is worth reusing. `tests/security/test_outbound_guard.py`
    pins that requests go through this pool; if httpx renames `_pool`, that test fails.
    """
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError("httpx.AsyncHTTPTransport no longer keeps its pool in `_pool`")
    transport._pool = pool
    return transport


def environment_proxies() -> dict[str, str | None]:
    """httpx's reading of `HTTP(S)_PROXY`, `ALL_PROXY` and `NO_PROXY`: mount pattern → proxy
    URL, None for "no proxy". httpx does it only for clients it builds the transport of, and
    offers no public function; confined here, pinned by a test."""
    from httpx._utils import get_environment_proxies

    return get_environment_proxies()


def guarded_client(
    policy: OutboundPolicy,
    *,
    timeout: httpx.Timeout,
    limits: httpx.Limits,
    headers: Mapping[str, str] | None = None,
    resolver: Resolver = resolve_host,
    proxies: Mapping[str, str | None] | None = None,
) -> httpx.AsyncClient:
    """An AsyncClient that reaches only what `policy` allows and never follows a redirect.

    `proxies` defaults to the environment's (see `environment_proxies`).
    """
    backend = GuardedNetworkBackend(policy, resolver=resolver)
    ssl_context = httpx.create_ssl_context()  # honours SSL_CERT_FILE, as httpx's own would
    pool = httpcore.AsyncConnectionPool(
        ssl_context=ssl_context,
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=backend,
    )
    direct = with_network_backend(httpx.AsyncHTTPTransport(verify=ssl_context, limits=limits), pool)
    mounts: dict[str, httpx.AsyncBaseTransport | None] = {
        # None sends the pattern to the client's own transport, the guarded one.
        pattern: None
        if proxy is None
        else _ProxiedTargetCheck(httpx.AsyncHTTPTransport(proxy=proxy, limits=limits), backend)
        for pattern, proxy in (environment_proxies() if proxies is None else proxies).items()
    }
    return httpx.AsyncClient(
        transport=direct,
        mounts=mounts,
        timeout=timeout,
        follow_redirects=False,
        headers=headers,
    )

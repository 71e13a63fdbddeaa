"""Which addresses a URL chosen by a member may reach, and what the operator allows beyond that.

Apart from the client (`adapters.outbound`) so that settings can check the operator's list at
start without loading httpx. Addresses are judged after every wrapping is taken off (IPv4-mapped
`::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`): each of those ends up at an IPv4 host,
and it is that host that must be public.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressKind(StrEnum):
    PUBLIC = "public"
    LOOPBACK = "loopback"
    PRIVATE = "private"
    LINK_LOCAL = "link-local"
    UNSPECIFIED = "unspecified"
    MULTICAST = "multicast"
    RESERVED = "reserved"


# What `allow_private` opens: the operator's own machine and networks. Link-local (where cloud
# metadata services answer, 169.254.169.254), multicast and reserved space stay closed even then:
# no chat server lives there, and a host the operator really means can be listed by name.
PRIVATE_KINDS: Final = frozenset({AddressKind.LOOPBACK, AddressKind.PRIVATE})

_PRIVATE_NETWORKS: Final = tuple(
    ipaddress.ip_network(network)
    for network in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT: the provider's network, not the internet
        "fc00::/7",
        "fec0::/10",  # deprecated site-local, still routed on some networks
        "64:ff9b:1::/48",  # local-use NAT64
    )
)
_THIS_NETWORK: Final = ipaddress.IPv4Network("0.0.0.0/8")  # 0.0.0.0 and its kin mean "this host"
# Special-purpose space that Python 3.11 still calls global.
_RESERVED_NETWORKS: Final = (ipaddress.IPv4Network("192.0.0.0/24"),)
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def address_kind(address: IPAddress) -> AddressKind:
    """The class of an address, judged on the IPv4 host behind any IPv6 wrapping."""
    if isinstance(address, ipaddress.IPv6Address) and (inner := _embedded_ipv4(address)):
        return address_kind(inner)
    if address.is_unspecified or address in _THIS_NETWORK:
        return AddressKind.UNSPECIFIED
    if address.is_loopback:
        return AddressKind.LOOPBACK
    if address.is_link_local:
        return AddressKind.LINK_LOCAL
    if address.is_multicast:
        return AddressKind.MULTICAST
    if any(address in network for network in _PRIVATE_NETWORKS):
        return AddressKind.PRIVATE
    if (
        address.is_reserved
        or address.is_private
        or not address.is_global
        or any(address in network for network in _RESERVED_NETWORKS)
    ):
        return AddressKind.RESERVED
    return AddressKind.PUBLIC


def normalised_host(host: str) -> str:
    """A host as compared with the operator's list: lower case, no brackets or trailing dot,
    IP literals in their canonical form (so `0:0::1` is `::1`)."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host


def _parse_allowed_host(entry: str) -> tuple[str, int | None]:
    text = entry.strip()
    if text.count(":") > 1 and not text.startswith("["):
        text = f"[{text}]"  # a bare IPv6 address has no port
    try:
        parts = urlsplit(f"//{text}")
        port = parts.port
    except ValueError:
        raise ValueError(f"{entry!r} is not a host or host:port") from None
    if not parts.hostname or parts.path or parts.query or parts.fragment or "@" in text:
        raise ValueError(f"{entry!r} is not a host or host:port (no scheme, path or user)")
    return normalised_host(parts.hostname), port


@dataclass(frozen=True)
class OutboundPolicy:
    """The operator's allowances; the default allows public addresses only.

    `allowed_hosts` holds `(host, port)` pairs, port None for any port; a listed host may
    resolve to anything (a local Ollama, a model server on the private network).
    """

    allow_private: bool = False
    allowed_hosts: frozenset[tuple[str, int | None]] = frozenset()

    @classmethod
    def of(cls, *, allow_private: bool, allowed_hosts: Iterable[str] = ()) -> OutboundPolicy:
        """From the settings' form (`host` or `host:port` strings); ValueError on a bad entry."""
        parsed = frozenset(_parse_allowed_host(entry) for entry in allowed_hosts if entry.strip())
        return cls(allow_private=allow_private, allowed_hosts=parsed)

    def allows_host(self, host: str, port: int) -> bool:
        name = normalised_host(host)
        return (name, None) in self.allowed_hosts or (name, port) in self.allowed_hosts

    def allows_address(self, address: IPAddress) -> bool:
        kind = address_kind(address)
        return kind is AddressKind.PUBLIC or (self.allow_private and kind in PRIVATE_KINDS)


def parse_allowed_hosts(raw: Iterable[str]) -> tuple[str, ...]:
    """Checks the operator's list at start (ValueError naming the bad entry); keeps its text."""
    entries = tuple(entry.strip() for entry in raw if entry.strip())
    for entry in entries:
        _parse_allowed_host(entry)
    return entries

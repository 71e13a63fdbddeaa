"""Who the client is when the API sits behind reverse proxies (the address throttling counts by).

X-Forwarded-For is a list every proxy appends its own peer to, so only the entries appended by
proxies we run are facts; anything further left is whatever the client chose to send. Walking
from the right, each entry is believed while the hop that wrote it is a trusted proxy; the first
address that is not one is the client.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address
UNKNOWN_CLIENT = "unknown"


def _parse(value: str) -> Address | None:
    value = value.strip()
    if value.startswith("["):  # "[2001:db8::1]:4711"
        value = value[1 : value.find("]")] if "]" in value else value
    elif value.count(":") == 1:  # "198.51.100.7:4711"
        value = value.split(":", 1)[0]
    try:
        parsed = ip_address(value)
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d: one client, one key.
    if isinstance(parsed, IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


def _is_trusted(address: Address, proxies: Sequence[Network]) -> bool:
    return any(address in network for network in proxies)


def resolve_client_address(
    peer: str | None, forwarded_for: Iterable[str], trusted_proxies: Sequence[Network]
) -> str:
    """The client's address: the peer itself unless it is a trusted proxy, else the right-most
    X-Forwarded-For hop that is not one. Several header lines count as one list, in order."""
    if peer is None:
        return UNKNOWN_CLIENT
    nearest = _parse(peer)
    if nearest is None:
        return peer
    if not trusted_proxies or not _is_trusted(nearest, trusted_proxies):
        return str(nearest)
    hops = [hop for line in forwarded_for for hop in line.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _parse(hop)
        if address is None:
            # A trusted proxy could not name its peer: count by that proxy, never by a guess.
            return str(nearest)
        if not _is_trusted(address, trusted_proxies):
            return str(address)
        nearest = address
    return str(nearest)

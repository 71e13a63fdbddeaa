"""Which environment variables a bot's `api_key_env` may name: only those the operator offers.

A bot's owner chooses both `api_key_env` and `base_url`, so any variable a bot may name is a
variable its owner can have sent to a server of their choosing. The operator therefore lists
the upstream keys on offer (`CHATBOTS_UPSTREAM_KEYS`), and the service's own settings
(`CHATBOTS_*`: the signing key, the database URL with its password) never qualify, listed or not.

An offered key can still be sent wherever its bot's owner points `base_url`, so an entry may bind
it to the host it belongs to: `OPENAI_API_KEY@api.openai.com` (or `host:port`) is sent to that
host only; a bare name goes to any host a bot names, for operators who trust every member.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from typing import Final
from urllib.parse import urlsplit

SERVICE_SETTINGS_PREFIX: Final = "CHATBOTS_"
ENV_VAR_NAME: Final = re.compile(r"[A-Z_][A-Z0-9_]*")
MAX_ENV_VAR_NAME_LENGTH: Final = 128


def is_service_setting(name: str) -> bool:
    # Settings are read case-insensitively, so `chatbots_jwt_secret` is one too.
    return name.upper().startswith(SERVICE_SETTINGS_PREFIX)


_HOST_BINDING: Final = re.compile(
    r"[A-Za-z0-9.\-]+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?"
)


def _split(entry: str) -> tuple[str, str | None]:
    name, _, host = entry.partition("@")
    return name, (host.lower() if host else None)


def checked_offer(names: Iterable[str]) -> tuple[str, ...]:
    """The operator's list, checked at start: ValueError names an entry that cannot be offered."""
    offered: list[str] = []
    for raw in names:
        entry = raw.strip()
        if not entry:
            continue
        name, host = _split(entry)
        if host is not None and not _HOST_BINDING.fullmatch(host):
            raise ValueError(f"{entry!r}: bind a key to a host as NAME@host or NAME@host:port")
        if len(name) > MAX_ENV_VAR_NAME_LENGTH or not ENV_VAR_NAME.fullmatch(name):
            raise ValueError(
                f"{name!r} is not the name of an environment variable (capital letters, "
                "digits and underscores)"
            )
        if is_service_setting(name):
            raise ValueError(
                f"{name} is one of this service's own settings: a {SERVICE_SETTINGS_PREFIX}* "
                "variable is never offered to bots as an upstream key"
            )
        if entry not in offered:
            offered.append(entry)
    return tuple(offered)


def offered_upstream_keys(names: Iterable[str], environ: Mapping[str, str]) -> dict[str, str]:
    """Offered name → value, read once (a variable that is not set maps to "").

    The engine gets this instead of the environment, so no bot reaches another variable.
    """
    names = {_split(entry)[0] for entry in names}
    return {name: environ.get(name, "") for name in names if not is_service_setting(name)}


def _destination(base_url: str) -> tuple[str, str]:
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    return host, f"{host}:{parts.port}" if parts.port else host


def refusal_of(name: str, offered: Collection[str], base_url: str) -> str | None:
    """Why a bot may not send `name` to `base_url`, or None if it may."""
    hosts = [host for entry_name, host in map(_split, offered) if entry_name == name]
    if hosts and not is_service_setting(name):
        if None in hosts or set(_destination(base_url)) & set(hosts):
            return None
        bound = ", ".join(sorted(h for h in hosts if h is not None))
        return f"api_key_env {name} may only be sent to {bound}, not to this base_url"
    names = sorted({_split(entry)[0] for entry in offered})
    if names:
        choice = "this server offers: " + ", ".join(names)
    else:
        choice = (
            "this server offers none (its operator lists them in "
            f"{SERVICE_SETTINGS_PREFIX}UPSTREAM_KEYS)"
        )
    return f"api_key_env {name} is not one of the upstream keys {choice}"

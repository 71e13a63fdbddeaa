"""What a bot's `engine_config` may say for the `openai` engine, and what it comes to per call.

Apart from the engine (`engine`, `upstream`) so that checking a bot's settings does not load the
HTTP client stack: a worker whose bots all answer from knowledge never imports it (~6 MB).
`UpstreamSettings` lives here too because it is the same rules applied again when a bot answers.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from adapters.engines.openai.keys import ENV_VAR_NAME, MAX_ENV_VAR_NAME_LENGTH, refusal_of
from application.errors import UpstreamFailed

DEFAULT_CONTEXT_ENTRIES: Final = 3
MAX_CONTEXT_ENTRIES: Final = 20
MAX_TIMEOUT_SECONDS: Final = 600.0
MAX_MODEL_NAME_LENGTH: Final = 200

_ALLOWED_CONFIG_KEYS: Final = (
    "base_url",
    "model",
    "temperature",
    "max_tokens",
    "api_key_env",
    "context_entries",
    "timeout_seconds",
)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def validate_openai_config(
    config: Mapping[str, Any], *, offered_keys: Collection[str] = ()
) -> dict[str, Any]:
    """Check a bot's `engine_config` for the `openai` engine and return it normalised.

    Raises ValueError with a message fit for a 422 answer. Keys whose value is None count as
    absent, so a PATCH can unset an optional setting. `timeout_seconds`, when given, replaces
    the engine's first-byte and between-chunks waits for this bot (it is capped, so a bot can
    never hold a request open for ever). `base_url` may not carry credentials: keys travel only
    through `api_key_env`, which is the *name* of an environment variable, never a key, and
    one of `offered_keys`, the variables the operator offers (none by default).
    """
    if not isinstance(config, Mapping):
        raise ValueError("engine_config must be an object")
    present = {key: value for key, value in config.items() if value is not None}
    unknown = sorted(str(key) for key in present if key not in _ALLOWED_CONFIG_KEYS)
    if unknown:
        raise ValueError(
            f"unknown engine_config key(s) for the openai engine: {', '.join(unknown)}; "
            f"allowed: {', '.join(_ALLOWED_CONFIG_KEYS)}"
        )
    normalised: dict[str, Any] = {
        "base_url": _valid_base_url(present.get("base_url")),
        "model": _valid_model(present.get("model")),
    }
    if "temperature" in present:
        temperature = present["temperature"]
        if not _is_number(temperature) or not 0 <= temperature <= 2:
            raise ValueError("temperature must be a number from 0 to 2")
        normalised["temperature"] = float(temperature)
    if "max_tokens" in present:
        max_tokens = present["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise ValueError("max_tokens must be a positive integer")
        normalised["max_tokens"] = max_tokens
    if "api_key_env" in present:
        name = present["api_key_env"]
        if (
            not isinstance(name, str)
            or len(name) > MAX_ENV_VAR_NAME_LENGTH
            or not ENV_VAR_NAME.fullmatch(name)
        ):
            raise ValueError(
                "api_key_env must be the name of an environment variable "
                "(capital letters, digits and underscores, e.g. OPENAI_API_KEY), not a key"
            )
        if (refusal := refusal_of(name, offered_keys, normalised["base_url"])) is not None:
            raise ValueError(refusal)
        normalised["api_key_env"] = name
    if "context_entries" in present:
        entries = present["context_entries"]
        if (
            not isinstance(entries, int)
            or isinstance(entries, bool)
            or not 0 <= entries <= MAX_CONTEXT_ENTRIES
        ):
            raise ValueError(f"context_entries must be an integer from 0 to {MAX_CONTEXT_ENTRIES}")
        normalised["context_entries"] = entries
    if "timeout_seconds" in present:
        seconds = present["timeout_seconds"]
        if (
            not _is_number(seconds)
            or not math.isfinite(seconds)
            or not 0 < seconds <= MAX_TIMEOUT_SECONDS
        ):
            raise ValueError(
                f"timeout_seconds must be a number greater than 0 and at most "
                f"{MAX_TIMEOUT_SECONDS:g}"
            )
        normalised["timeout_seconds"] = float(seconds)
    return normalised


def _valid_base_url(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("base_url is required: the URL of an OpenAI-compatible API, e.g. .../v1")
    url = raw.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is what validates it
    except ValueError:
        raise ValueError("base_url is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("base_url must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("base_url must not contain credentials; name a variable in api_key_env")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not have a query string or a fragment")
    return url.rstrip("/")


def _valid_model(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("model is required: the upstream's model name")
    model = raw.strip()
    if len(model) > MAX_MODEL_NAME_LENGTH:
        raise ValueError(f"model must be at most {MAX_MODEL_NAME_LENGTH} characters long")
    return model


@dataclass(frozen=True)
class UpstreamSettings:
    """One bot's validated `engine_config`, with the waits it implies."""

    base_url: str
    model: str
    temperature: float | None
    max_tokens: int | None
    api_key_env: str | None
    context_entries: int
    wait_override: float | None

    @classmethod
    def of(
        cls, engine_config: Mapping[str, Any], offered_keys: Collection[str]
    ) -> UpstreamSettings:
        # Checked again at call time: a bot stored before a rule existed must obey it too.
        try:
            config = validate_openai_config(engine_config, offered_keys=offered_keys)
        except ValueError as error:
            raise UpstreamFailed(f"the bot's openai engine_config is invalid: {error}") from None
        return cls(
            base_url=config["base_url"],
            model=config["model"],
            temperature=config.get("temperature"),
            max_tokens=config.get("max_tokens"),
            api_key_env=config.get("api_key_env"),
            context_entries=config.get("context_entries", DEFAULT_CONTEXT_ENTRIES),
            wait_override=config.get("timeout_seconds"),
        )

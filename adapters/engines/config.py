"""Per-engine configuration rules, behind the application's `EngineConfigRules` port."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from functools import partial
from typing import Any

from adapters.engines.knowledge.config import validate_knowledge_config
from adapters.engines.openai.config import validate_openai_config
from domain.bots import EngineKind
from domain.errors import InvalidValue

Validator = Callable[[Mapping[str, Any]], dict[str, Any]]


class EngineConfigValidator:
    """`offered_upstream_keys` are the variable names the operator lets bots use as
    `api_key_env` (`CHATBOTS_UPSTREAM_KEYS`); with none, no `openai` bot may name a key."""

    def __init__(
        self,
        validators: Mapping[EngineKind, Validator] | None = None,
        *,
        offered_upstream_keys: Collection[str] = (),
    ) -> None:
        self._validators: Mapping[EngineKind, Validator] = validators or {
            EngineKind.KNOWLEDGE: validate_knowledge_config,
            EngineKind.OPENAI: partial(
                validate_openai_config, offered_keys=tuple(offered_upstream_keys)
            ),
        }

    def validate(self, engine: EngineKind, config: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._validators[engine](config)
        except ValueError as error:
            raise InvalidValue("engine_config", str(error)) from error

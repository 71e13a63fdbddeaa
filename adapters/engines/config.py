"""Per-engine configuration rules, behind the application's `EngineConfigRules` port."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from adapters.engines.knowledge import validate_knowledge_config
from adapters.engines.openai_config import validate_openai_config
from domain.bots import EngineKind
from domain.errors import InvalidValue

Validator = Callable[[Mapping[str, Any]], dict[str, Any]]


class EngineConfigValidator:
    def __init__(self, validators: Mapping[EngineKind, Validator] | None = None) -> None:
        self._validators: Mapping[EngineKind, Validator] = validators or {
            EngineKind.KNOWLEDGE: validate_knowledge_config,
            EngineKind.OPENAI: validate_openai_config,
        }

    def validate(self, engine: EngineKind, config: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._validators[engine](config)
        except ValueError as error:
            raise InvalidValue("engine_config", str(error)) from error

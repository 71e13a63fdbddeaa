"""Checking a bot's `engine_config` loads no engine: no numpy, bm25s, PyStemmer or httpx.

The validator runs wherever bots are saved; the engines' heavy dependencies load only where a
bot answers. A fresh interpreter is the only place to see what an import pulls in.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

HEAVY_MODULES = ("numpy", "bm25s", "Stemmer", "httpx")

SCRIPT = f"""
import json
import sys

from adapters.engines.config import EngineConfigValidator
from domain.bots import EngineKind

validator = EngineConfigValidator(offered_upstream_keys=("OPENAI_API_KEY@api.openai.com",))
knowledge = validator.validate(EngineKind.KNOWLEDGE, {{"threshold": 0.7}})
openai = validator.validate(
    EngineKind.OPENAI,
    {{
        "base_url": "https://api.openai.com/v1/",
        "model": "gpt-4o-mini",
        "api_key_env": "OPENAI_API_KEY",
        "timeout_seconds": 30,
    }},
)
print(json.dumps({{
    "knowledge": knowledge,
    "openai": openai,
    "loaded": [name for name in {HEAVY_MODULES!r} if name in sys.modules],
}}))
"""


def test_validating_engine_configs_imports_no_engine_dependency() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["knowledge"] == {"threshold": 0.7}
    assert outcome["openai"] == {
        "base_url": "https://api.openai.com/v1",
        "model": "gpt-4o-mini",
        "api_key_env": "OPENAI_API_KEY",
        "timeout_seconds": 30.0,
    }
    assert outcome["loaded"] == []

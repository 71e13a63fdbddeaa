"""The composition root builds what a worker needs, and only that."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import sys
from entrypoints.api.app import create_app
from entrypoints.bootstrap import build_container
from entrypoints.settings import Settings

container = build_container(Settings(database_url="memory://", jwt_secret="s" * 40))
create_app(container)
container.conversations()
print("httpx" in sys.modules)
"""


def test_a_worker_without_upstream_bots_never_loads_the_http_client() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOTS_")}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True
    )
    assert result.stdout.strip() == "False", result.stderr

"""huey, imported without the storages this service never uses.

`huey.storage` imports redis and psycopg whenever they are installed (both are, for the
throttling counters and the distributed engine) to offer its Redis and PostgreSQL storages. The
embedded engine uses only SQLite, and those two imports would cost the API process more memory
than the whole job engine, so they are hidden while huey loads: huey then sees them as absent,
exactly as on a machine without them. Modules already imported are left alone.
"""

from __future__ import annotations

import sys
from typing import Final

_OPTIONAL_BACKENDS: Final = ("redis", "psycopg")

_hidden = [name for name in _OPTIONAL_BACKENDS if name not in sys.modules]
for _name in _hidden:
    sys.modules[_name] = None  # type: ignore[assignment]  # `import` then raises ImportError
try:
    from huey import SqliteHuey
    from huey.constants import EmptyData
    from huey.consumer import Consumer, Scheduler
    from huey.exceptions import RetryTask
    from huey.storage import SqliteStorage
finally:
    for _name in _hidden:
        del sys.modules[_name]

__all__ = ["Consumer", "EmptyData", "RetryTask", "Scheduler", "SqliteHuey", "SqliteStorage"]

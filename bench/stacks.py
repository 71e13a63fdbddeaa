"""Stacks: a server plus whatever it needs (a fresh database, fixtures), started and torn down.

- `raw`: bench/apps/raw.py, no database.
- `floor-pg`, `floor-sqlite`: bench/apps/floor.py on a fresh database holding one row.
- `api-pg`, `api-sqlite`: our service (`python -m entrypoints.cli serve`), migrated, then filled
  through its public API.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench import knowledge
from bench.api_client import ApiClient, ApiError
from bench.apps import floor
from bench.databases import PostgresDatabase, SqliteDatabase
from bench.progress import say
from bench.servers import ServerProcess, child_env, python_command, uvicorn_flags

MIGRATE_TIMEOUT_SECONDS = 180
JWT_SECRET_BYTES = 48
# Long enough to outlive the whole bench: a token expiring mid-run would turn into 401s.
ACCESS_TOKEN_TTL_SECONDS = 3600


class StackError(RuntimeError):
    """A stack could not be set up; its cases are reported as unavailable with this message."""


class Stack:
    name = "stack"
    db: str | None = None

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.server: ServerProcess | None = None
        self.idle_rss_kib: int | None = None
        self.loaded_rss_kib: int | None = None

    @property
    def running(self) -> ServerProcess:
        if self.server is None:
            raise StackError(f"{self.name} is not running")
        return self.server

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def note_loaded_rss(self) -> None:
        """Keeps the largest RSS seen right after a 32-connection run."""
        rss = self.running.rss_kib()
        self.loaded_rss_kib = max(self.loaded_rss_kib or 0, rss)

    def _bench_app(self, module: str, env: dict[str, str]) -> ServerProcess:
        server = ServerProcess(
            name=self.name,
            command=[],
            env=child_env(env),
            log_path=self.workdir / f"{self.name}.log",
            cwd=self.workdir,
        )
        server.command = (
            python_command(
                "-m", "uvicorn", module, "--host", "127.0.0.1", "--port", str(server.port)
            )
            + uvicorn_flags()
        )
        return server


class RawStack(Stack):
    name = "raw"

    def start(self) -> None:
        self.server = self._bench_app("bench.apps.raw:app", {})
        self.server.health_path = "/"
        self.server.start()


class FloorStack(Stack):
    def __init__(self, workdir: Path, db: str) -> None:
        super().__init__(workdir)
        self.db = db
        self.name = f"floor-{db}"
        self.secret = secrets.token_urlsafe(JWT_SECRET_BYTES)
        self.owner_id = uuid.uuid4()
        self.token = floor.mint_token(self.secret, self.owner_id, ACCESS_TOKEN_TTL_SECONDS)
        self.row_id: uuid.UUID | None = None
        self._postgres: PostgresDatabase | None = None
        self._sqlite: SqliteDatabase | None = None

    def start(self) -> None:
        if self.db == "pg":
            self._postgres = PostgresDatabase("bench_floor")
            self._postgres.create()
            dsn = self._postgres.dsn
        else:
            self._sqlite = SqliteDatabase(self.workdir, "floor")
            dsn = f"sqlite:///{self._sqlite.path}"
        self.row_id = asyncio.run(floor.prepare(dsn, self.owner_id))
        self.server = self._bench_app(
            "bench.apps.floor:app", {"BENCH_FLOOR_DSN": dsn, "BENCH_JWT_SECRET": self.secret}
        )
        self.server.start()

    def stop(self) -> None:
        super().stop()
        if self._postgres is not None:
            self._postgres.drop()
        if self._sqlite is not None:
            self._sqlite.drop()


@dataclass
class ApiFixture:
    email: str
    password: str
    token: str
    bot_id: str
    history_conversation_id: str
    post_conversation_ids: list[str]
    conversations_file: Path
    bodies_file: Path


@dataclass(frozen=True)
class ApiSetup:
    """How much the set-up creates before the load runs."""

    post_conversations: int = 200
    history_posts: int = 12  # greeting + 12 x (question, reply) = 25 messages: > one page of 20
    knowledge_entries: int = 48


class ApiStack(Stack):
    def __init__(self, workdir: Path, db: str, setup: ApiSetup) -> None:
        super().__init__(workdir)
        self.db = db
        self.name = f"api-{db}"
        self.setup = setup
        self.secret = secrets.token_urlsafe(JWT_SECRET_BYTES)
        self._fixture: ApiFixture | None = None
        self._postgres: PostgresDatabase | None = None
        self._sqlite: SqliteDatabase | None = None
        self.database_url = ""

    @property
    def fixture(self) -> ApiFixture:
        if self._fixture is None:
            raise StackError(f"{self.name} has no fixture")
        return self._fixture

    def env(self) -> dict[str, str]:
        return {
            "CHATBOTS_DATABASE_URL": self.database_url,
            "CHATBOTS_JWT_SECRET": self.secret,
            "CHATBOTS_SEED_EXAMPLE_BOT": "false",
            "CHATBOTS_ENV": "test",
            "CHATBOTS_ACCESS_TOKEN_TTL_SECONDS": str(ACCESS_TOKEN_TTL_SECONDS),
            # The Argon2 case signs one account in over many connections at once; sign-ins
            # being checked count against the limit, which would turn most into 429s.
            "CHATBOTS_LOGIN_MAX_FAILURES": "1000000",
        }

    def start(self) -> None:
        if self.db == "pg":
            self._postgres = PostgresDatabase("bench_api")
            self._postgres.create()
            self.database_url = self._postgres.sqlalchemy_url
        else:
            self._sqlite = SqliteDatabase(self.workdir, "api")
            self.database_url = self._sqlite.sqlalchemy_url
        env = child_env(self.env())
        # The working directory is the temp dir: a developer's .env in the checkout must not leak
        # settings into the measurement (PYTHONPATH still finds the code).
        try:
            migrated = subprocess.run(
                python_command("-m", "entrypoints.cli", "migrate"),
                env=env,
                cwd=self.workdir,
                capture_output=True,
                text=True,
                timeout=MIGRATE_TIMEOUT_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise StackError(
                f"{self.name}: migrate took over {MIGRATE_TIMEOUT_SECONDS} s"
            ) from error
        if migrated.returncode != 0:
            tail = "\n".join((migrated.stdout + migrated.stderr).strip().splitlines()[-15:])
            raise StackError(f"{self.name}: `python -m entrypoints.cli migrate` failed:\n{tail}")
        self.server = ServerProcess(
            name=self.name, command=[], env=env, log_path=self.workdir / f"{self.name}.log"
        )
        self.server.cwd = self.workdir
        self.server.command = python_command(
            "-m", "entrypoints.cli", "serve", "--host", "127.0.0.1", "--port", str(self.server.port)
        )
        self.server.start()
        self._fixture = self._fill()

    def _fill(self) -> ApiFixture:
        setup = self.setup
        client = ApiClient(self.running.base_url)
        email = f"bench-{secrets.token_hex(4)}@example.com"
        password = secrets.token_urlsafe(16)
        try:
            client.register(email, password, "Bench")
            token = client.login(email, password)
            bot_id = client.create_bot("Bench support bot", "Hello! How can I help you today?")
            entries = knowledge.entries(setup.knowledge_entries)
            client.add_knowledge(bot_id, entries)
            client.publish(bot_id)
            questions = knowledge.questions(entries, setup.knowledge_entries)
            history_id = client.open_conversation(bot_id)
            for number in range(setup.history_posts):
                client.post_message(history_id, questions[number % len(questions)])
            say(f"{self.name}: opening {setup.post_conversations} conversations for the post case")
            post_ids = [client.open_conversation(bot_id) for _ in range(setup.post_conversations)]
        except ApiError as error:
            raise StackError(f"{self.name}: set-up through the API failed: {error}") from error
        finally:
            client.close()
        conversations_file = self.workdir / f"{self.name}-conversations.txt"
        conversations_file.write_text("\n".join(post_ids) + "\n")
        bodies_file = self.workdir / f"{self.name}-bodies.txt"
        bodies_file.write_text("\n".join(knowledge.message_bodies(entries, len(entries))) + "\n")
        return ApiFixture(
            email=email,
            password=password,
            token=token,
            bot_id=bot_id,
            history_conversation_id=history_id,
            post_conversation_ids=post_ids,
            conversations_file=conversations_file,
            bodies_file=bodies_file,
        )

    def stop(self) -> None:
        super().stop()
        if self._postgres is not None:
            self._postgres.drop()
        if self._sqlite is not None:
            self._sqlite.drop()

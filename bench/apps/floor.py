"""The floor: the cheapest honest authenticated read, to measure our API against.

A minimal FastAPI app that verifies an HS256 bearer JWT (joserfc, algorithm pinned, claims
validated as our service does) and reads one row by primary key with raw asyncpg (a pool) or
aiosqlite, returning it as JSON. No ORM, no DI container, no unit of work: what our
`GET /api/v1/bots/{id}` costs above this is the price of its layers.

Configured by environment: BENCH_FLOOR_DSN (`postgresql://...` or `sqlite:///path`),
BENCH_JWT_SECRET, and BENCH_DB_POOL_SIZE (default 10, our service's pool size).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

import aiosqlite
import asyncpg  # type: ignore[import-untyped]
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

ALGORITHM = "HS256"
TOKEN_TYPE = "at+jwt"
ISSUER = "bench-floor"
AUDIENCE = "bench-floor-api"
LEEWAY_SECONDS = 5
TABLE = "floor_rows"
COLUMNS = (
    "id, owner_id, name, description, system_prompt, greeting, fallback_message, engine, "
    "engine_config, status, version, created_at, updated_at"
)

# The row mirrors a bot: the same columns and similar sizes, so the JSON is as big as ours.
PG_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id uuid PRIMARY KEY, owner_id uuid NOT NULL, name varchar(100) NOT NULL,
    description text NOT NULL, system_prompt text NOT NULL, greeting text NOT NULL,
    fallback_message text NOT NULL, engine varchar(20) NOT NULL, engine_config jsonb NOT NULL,
    status varchar(20) NOT NULL, version integer NOT NULL,
    created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL
)"""
SQLITE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id text PRIMARY KEY, owner_id text NOT NULL, name text NOT NULL, description text NOT NULL,
    system_prompt text NOT NULL, greeting text NOT NULL, fallback_message text NOT NULL,
    engine text NOT NULL, engine_config text NOT NULL, status text NOT NULL,
    version integer NOT NULL, created_at text NOT NULL, updated_at text NOT NULL
)"""


def sample_row(owner_id: uuid.UUID) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": uuid.uuid4(),
        "owner_id": owner_id,
        "name": "Support bot",
        "description": "Answers questions about orders, shipping, returns and accounts.",
        "system_prompt": "You are a helpful, concise support assistant for an online shop.",
        "greeting": "Hello! How can I help you today?",
        "fallback_message": "Sorry, I do not know that yet. A human will follow up.",
        "engine": "knowledge",
        "engine_config": {"min_confidence": 0.35, "top_k": 3},
        "status": "published",
        "version": 3,
        "created_at": now,
        "updated_at": now,
    }


def mint_token(secret: str, subject: uuid.UUID, ttl_seconds: int = 3600) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(subject),
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
        "role": "member",
    }
    header = {"alg": ALGORITHM, "typ": TOKEN_TYPE}
    return jwt.encode(header, claims, OctKey.import_key(secret), algorithms=[ALGORITHM])


async def prepare(dsn: str, owner_id: uuid.UUID) -> uuid.UUID:
    """Creates the table in `dsn` and one row owned by `owner_id`; returns the row's id."""
    row = sample_row(owner_id)
    if dsn.startswith("sqlite:///"):
        async with aiosqlite.connect(dsn.removeprefix("sqlite:///")) as db:
            await db.execute("PRAGMA journal_mode=WAL")
            await db.execute(SQLITE_SCHEMA)
            await db.execute(
                f"INSERT INTO {TABLE} ({COLUMNS}) VALUES ({', '.join('?' * len(row))})",
                [_sqlite_value(value) for value in row.values()],
            )
            await db.commit()
    else:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(PG_SCHEMA)
            placeholders = ", ".join(f"${i}" for i in range(1, len(row) + 1))
            values = [json.dumps(v) if isinstance(v, dict) else v for v in row.values()]
            await connection.execute(
                f"INSERT INTO {TABLE} ({COLUMNS}) VALUES ({placeholders})", *values
            )
        finally:
            await connection.close()
    row_id: uuid.UUID = row["id"]
    return row_id


def _sqlite_value(value: Any) -> Any:
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, uuid.UUID | datetime):
        return str(value) if isinstance(value, uuid.UUID) else value.isoformat()
    return value


class RowStore(Protocol):
    async def fetch(self, row_id: uuid.UUID) -> dict[str, Any] | None: ...

    async def close(self) -> None: ...


class PostgresStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def open(cls, dsn: str, size: int) -> PostgresStore:
        async def decode_jsonb(connection: asyncpg.Connection) -> None:
            await connection.set_type_codec(
                "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )

        pool = await asyncpg.create_pool(dsn, min_size=size, max_size=size, init=decode_jsonb)
        return cls(pool)

    async def fetch(self, row_id: uuid.UUID) -> dict[str, Any] | None:
        # asyncpg prepares and caches the statement per connection: one round trip per read.
        row = await self._pool.fetchrow(f"SELECT {COLUMNS} FROM {TABLE} WHERE id = $1", row_id)
        return dict(row) if row is not None else None

    async def close(self) -> None:
        await self._pool.close()


class SqliteStore:
    """A small pool of aiosqlite connections (each runs its queries on a thread of its own)."""

    def __init__(self, connections: list[aiosqlite.Connection]) -> None:
        self._connections = connections
        self._idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        for connection in connections:
            self._idle.put_nowait(connection)

    @classmethod
    async def open(cls, path: str, size: int) -> SqliteStore:
        connections = []
        for _ in range(size):
            connection = await aiosqlite.connect(path)
            connection.row_factory = aiosqlite.Row
            await connection.execute("PRAGMA journal_mode=WAL")
            connections.append(connection)
        return cls(connections)

    async def fetch(self, row_id: uuid.UUID) -> dict[str, Any] | None:
        connection = await self._idle.get()
        try:
            cursor = await connection.execute(
                f"SELECT {COLUMNS} FROM {TABLE} WHERE id = ?", (str(row_id),)
            )
            row = await cursor.fetchone()
            await cursor.close()
        finally:
            self._idle.put_nowait(connection)
        if row is None:
            return None
        found = dict(row)
        found["engine_config"] = json.loads(found["engine_config"])
        return found

    async def close(self) -> None:
        for connection in self._connections:
            await connection.close()


class TokenVerifier:
    def __init__(self, secret: str) -> None:
        self._key = OctKey.import_key(secret)
        # now=None: the registry reads the clock at each validation.
        self._registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": ISSUER},
            aud={"essential": True, "value": AUDIENCE},
            sub={"essential": True},
            exp={"essential": True},
            nbf={"essential": True},
            iat={"essential": True},
            jti={"essential": True},
            role={"essential": True, "values": ["admin", "member"]},
        )

    def subject(self, token: str) -> str:
        try:
            decoded = jwt.decode(token, self._key, algorithms=[ALGORITHM])
            if decoded.header.get("typ") != TOKEN_TYPE:
                raise ValueError("not an access token")
            self._registry.validate(decoded.claims)
            return str(decoded.claims["sub"])
        except (JoseError, ValueError, TypeError, KeyError) as error:
            raise _unauthorized() from error


def _unauthorized() -> HTTPException:
    return HTTPException(401, "invalid or expired token", headers={"WWW-Authenticate": "Bearer"})


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    dsn = os.environ["BENCH_FLOOR_DSN"]
    size = int(os.environ.get("BENCH_DB_POOL_SIZE", "10"))
    store: RowStore
    if dsn.startswith("sqlite:///"):
        # SQLAlchemy's default pool for a SQLite file (what our service gets) holds 5.
        store = await SqliteStore.open(dsn.removeprefix("sqlite:///"), min(size, 5))
    else:
        store = await PostgresStore.open(dsn, size)
    app.state.store = store
    app.state.verifier = TokenVerifier(os.environ["BENCH_JWT_SECRET"])
    yield
    await store.close()


app = FastAPI(title="bench floor", lifespan=lifespan)
bearer = HTTPBearer(auto_error=False)


async def current_user(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    if credentials is None:
        raise _unauthorized()
    # Verified inline, not in a thread: a few microseconds of CPU, like our service does it.
    verifier: TokenVerifier = app.state.verifier
    return verifier.subject(credentials.credentials)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/rows/{row_id}")
async def read_row(row_id: uuid.UUID, user_id: Annotated[str, Depends(current_user)]) -> Any:
    store: RowStore = app.state.store
    row = await store.fetch(row_id)
    # Ownership like ours: another owner's row is a 404, never a 403.
    if row is None or str(row["owner_id"]) != user_id:
        raise HTTPException(404, "not found")
    return row

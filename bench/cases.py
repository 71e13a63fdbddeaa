"""The catalogue of load cases: what each one sends, to which stack.

To add a case: write a function that turns its (started) stack into a `LoadSpec` — the path, a
Lua script from bench/scripts and its arguments — and append a `Case` to `CASES`. A new request
shape needs a new Lua script; a new server needs a new `Stack` in bench/stacks.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bench.stacks import ApiFixture, ApiStack, FloorStack, Stack, StackError
from bench.wrk import LoadSpec

# Same size as one of our access tokens, so raw parses as many header bytes as the others.
RAW_TOKEN = "x" * 300


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # raw | floor | bots | history | post
    stack: str  # the `Stack.name` it runs against
    db: str | None
    ours: bool  # our API (targets apply), as opposed to a reference app
    load: Callable[[Stack], LoadSpec]

    @property
    def floor_case(self) -> str | None:
        """The floor of the same database, which this case's ratio is taken against."""
        return f"floor-{self.db}" if self.db else None


def _fixture(stack: Stack) -> ApiFixture:
    if not isinstance(stack, ApiStack):
        raise StackError(f"{stack.name} is not our API")
    return stack.fixture


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/json"}


def raw_load(_stack: Stack) -> LoadSpec:
    return LoadSpec("GET", "/", "get.lua", (RAW_TOKEN,), _bearer(RAW_TOKEN))


def floor_load(stack: Stack) -> LoadSpec:
    if not isinstance(stack, FloorStack) or stack.row_id is None:
        raise StackError(f"{stack.name} is not a started floor")
    return LoadSpec("GET", f"/rows/{stack.row_id}", "get.lua", (stack.token,), _bearer(stack.token))


def bots_load(stack: Stack) -> LoadSpec:
    fixture = _fixture(stack)
    path = f"/api/v1/bots/{fixture.bot_id}"
    return LoadSpec("GET", path, "get.lua", (fixture.token,), _bearer(fixture.token))


def history_load(stack: Stack) -> LoadSpec:
    fixture = _fixture(stack)
    path = f"/api/v1/conversations/{fixture.history_conversation_id}/messages?limit=20"
    return LoadSpec("GET", path, "get.lua", (fixture.token,), _bearer(fixture.token))


def post_load(stack: Stack) -> LoadSpec:
    fixture = _fixture(stack)
    # The script picks the conversation per request; the URL's path only serves the probe.
    path = f"/api/v1/conversations/{fixture.post_conversation_ids[0]}/messages"
    first_body = fixture.bodies_file.read_text().splitlines()[0].encode()
    return LoadSpec(
        "POST",
        path,
        "post_message.lua",
        (fixture.token, str(fixture.conversations_file), str(fixture.bodies_file)),
        {**_bearer(fixture.token), "Content-Type": "application/json"},
        first_body,
    )


def _ours(kind: str, db: str, load: Callable[[Stack], LoadSpec]) -> Case:
    return Case(f"{kind}-{db}", kind, f"api-{db}", db, True, load)


CASES: list[Case] = [
    Case("raw", "raw", "raw", None, False, raw_load),
    Case("floor-pg", "floor", "floor-pg", "pg", False, floor_load),
    Case("floor-sqlite", "floor", "floor-sqlite", "sqlite", False, floor_load),
    *(
        _ours(kind, db, load)
        for db in ("pg", "sqlite")
        for kind, load in (("bots", bots_load), ("history", history_load), ("post", post_load))
    ),
]


def select(only: Iterable[str] | None) -> list[Case]:
    """Cases whose name, kind, database or stack is in `only` (all of them for None)."""
    if only is None:
        return list(CASES)
    wanted = {token.strip() for token in only if token.strip()}
    known = {value for case in CASES for value in (case.name, case.kind, case.db, case.stack)}
    unknown = wanted - known
    if unknown:
        raise ValueError(
            f"unknown case(s) {', '.join(sorted(unknown))}; choose from "
            + ", ".join(sorted(v for v in known if v))
        )
    return [case for case in CASES if wanted & {case.name, case.kind, case.db or "", case.stack}]

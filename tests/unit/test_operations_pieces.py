"""The small pieces under operations: the stream relay's heartbeat, request ids, log lines."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator

import pytest

from entrypoints.api.observed import new_request_id, request_id_of
from entrypoints.api.streaming import SILENCE, Silence, completed_even_if_abandoned
from entrypoints.log_format import REQUEST_ID, JsonLines, RequestIdField, TextWithRequestId
from entrypoints.log_safety import WithholdDatabaseErrorText

pytestmark = pytest.mark.unit
SECRET_EMAIL = "leak@example.com"


async def _slow_numbers(count: int, pause: float, seen: list[int]) -> AsyncIterator[int]:
    for number in range(count):
        await asyncio.sleep(pause)
        seen.append(number)
        yield number


async def test_silence_is_told_without_losing_or_cancelling_anything() -> None:
    produced: list[int] = []
    relayed: list[int | Silence] = []
    async for item in completed_even_if_abandoned(_slow_numbers(5, 0.03, produced), 0.005):
        relayed.append(item)
    assert [item for item in relayed if not isinstance(item, Silence)] == [0, 1, 2, 3, 4]
    assert produced == [0, 1, 2, 3, 4]
    assert relayed.count(SILENCE) >= 5  # several between each pair of numbers
    assert relayed[-1] == 4  # nothing after the end


async def test_without_quiet_after_the_relay_only_relays() -> None:
    relayed = [item async for item in completed_even_if_abandoned(_slow_numbers(3, 0.01, []))]
    assert relayed == [0, 1, 2]


async def test_an_abandoned_relay_leaves_the_producer_running() -> None:
    produced: list[int] = []
    relay = completed_even_if_abandoned(_slow_numbers(4, 0.02, produced), 0.005)
    async for item in relay:
        if item == 0:
            break
    await relay.aclose()  # type: ignore[attr-defined]
    await asyncio.sleep(0.2)
    assert produced == [0, 1, 2, 3]


def _scope(*headers: tuple[bytes, bytes]) -> dict[str, object]:
    return {"type": "http", "headers": [(b"host", b"t"), *headers]}


@pytest.mark.parametrize(
    "sent",
    [b"abc", b"A-Za.z_0:9", b"x" * 128, b"4c984ee2-3e50-427a-8891-8c5da68903b2", b"trace:1:2"],
)
def test_a_sane_client_request_id_is_kept(sent: bytes) -> None:
    assert request_id_of(_scope((b"x-request-id", sent))) == sent.decode()


@pytest.mark.parametrize(
    "sent", [b"", b"x" * 129, b"has space", b"semi;colon", b"new\nline", b"\xc3\xa9", b"a/b"]
)
def test_anything_else_gets_a_new_id(sent: bytes) -> None:
    replaced = request_id_of(_scope((b"x-request-id", sent)))
    assert replaced != sent.decode("latin-1")
    assert uuid.UUID(hex=replaced).hex == replaced


def test_new_ids_are_uuid4_hex_and_differ() -> None:
    ids = {new_request_id() for _ in range(2000)}
    assert len(ids) == 2000
    for value in ids:
        parsed = uuid.UUID(hex=value)
        assert (parsed.version, parsed.variant, parsed.hex) == (4, uuid.RFC_4122, value)
    assert request_id_of(_scope()) not in ids


def _driver_error() -> Exception:
    # Built here, not on the line that raises: a traceback quotes the raising line's source.
    return Exception(f"Key (email)=({SECRET_EMAIL})")


def _record(message: str, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("chatbots.test", logging.ERROR, __file__, 1, message, None, exc_info)


def _handled(record: logging.LogRecord, formatter: logging.Formatter) -> str:
    for step in (WithholdDatabaseErrorText(), RequestIdField()):
        step.filter(record)
    return formatter.format(record)


def test_text_lines_carry_the_request_id_only_during_a_request() -> None:
    text = TextWithRequestId(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    assert _handled(_record("outside"), text) == "ERROR:chatbots.test:outside"
    token = REQUEST_ID.set("req-1")
    try:
        assert _handled(_record("inside"), text) == "[req-1] ERROR:chatbots.test:inside"
    finally:
        REQUEST_ID.reset(token)


def test_a_json_line_keeps_message_and_safe_exception_apart() -> None:
    from sqlalchemy.exc import IntegrityError

    try:
        raise IntegrityError("INSERT", {}, _driver_error())
    except IntegrityError as error:
        record = _record("could not store", error)
    token = REQUEST_ID.set("req-2")
    try:
        line = json.loads(_handled(record, JsonLines(logging.Formatter())))
    finally:
        REQUEST_ID.reset(token)
    assert set(line) == {"time", "level", "logger", "message", "request_id", "exception"}
    assert (line["level"], line["logger"], line["message"]) == (
        "ERROR",
        "chatbots.test",
        "could not store",
    )
    assert line["request_id"] == "req-2"
    assert line["time"].endswith("Z")
    assert "IntegrityError: (message withheld: database error)" in line["exception"]
    assert SECRET_EMAIL not in json.dumps(line)


def test_a_json_line_without_log_safety_still_withholds() -> None:
    from sqlalchemy.exc import IntegrityError

    try:
        raise IntegrityError("INSERT", {}, _driver_error())
    except IntegrityError as error:
        record = _record("no filter on this handler", error)
    line = json.loads(JsonLines(logging.Formatter()).format(record))
    assert line["request_id"] is None
    assert "message withheld" in line["exception"]
    assert SECRET_EMAIL not in json.dumps(line)

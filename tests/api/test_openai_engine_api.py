"""`openai`-engine bots over the API against a real fault-injecting upstream on a real socket.

Every fault: the status and problem body, the user's message kept, and a working next post.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api.conftest import ApiUser, make_app, sign_up
from tests.api.test_bots_api import create_bot
from tests.api.test_conversations_api import _closed_port, history, parse_sse, post, start
from tests.api.test_identity_api import assert_problem
from tests.fake_upstream import FakeUpstream

pytestmark = pytest.mark.integration

FAULTS = [
    ("status_400", 502),
    ("status_401", 502),
    ("status_429", 502),
    ("status_500", 502),
    ("status_503", 502),
    ("invalid_json", 502),
    ("cut_stream", 502),
    ("drop_connection", 502),
    ("error_event", 502),
    ("html_page", 502),
    ("slow_first_byte", 504),
    ("slow_first_chunk", 504),
    ("slow_between_chunks", 504),
]


UPSTREAM_SECRET = "sk-test-secret-value-1234567890"


@pytest.fixture
async def app(database_url: str, sql_engine: object, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    """The fakes listen on 127.0.0.1: the operator allows private addresses, and offers one key
    that is set and one that is not (keys are read once, when the engine is built)."""
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", UPSTREAM_SECRET)
    monkeypatch.delenv("UNSET_UPSTREAM_KEY", raising=False)
    return make_app(
        database_url,
        outbound_allow_private=True,
        upstream_keys=("FAKE_UPSTREAM_KEY", "UNSET_UPSTREAM_KEY"),
    )


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream(slow_seconds=4.0) as fake:
        yield fake


@pytest.fixture
def fresh_upstream(upstream: FakeUpstream) -> FakeUpstream:
    upstream.reset()
    return upstream


async def llm_bot(user: ApiUser, base_url: str, **config: Any) -> dict[str, Any]:
    return await create_bot(
        user,
        engine="openai",
        system_prompt="You are terse.",
        engine_config={
            "base_url": base_url,
            "model": "fake-model",
            "timeout_seconds": 1.5,  # ample on a busy CI machine, well short of 4 s pauses
            **config,
        },
    )


@pytest.fixture
async def owner(client: httpx.AsyncClient) -> ApiUser:
    return await sign_up(client, "owner@example.com")


async def test_happy_path_stores_usage_and_sends_context(
    owner: ApiUser, fresh_upstream: FakeUpstream
) -> None:
    bot = await llm_bot(owner, fresh_upstream.url)
    await owner.client.post(
        f"/api/v1/bots/{bot['id']}/knowledge",
        json={"question": "What is the refund policy?", "answer": "30 days, no questions."},
        headers=owner.headers,
    )
    conversation = await start(owner, bot["id"])
    response = await post(owner, conversation["id"], "what is the refund policy")
    assert response.status_code == 201, response.text
    reply = response.json()["reply"]
    assert reply["content"] == "Echo: what is the refund policy"
    assert reply["metadata"]["engine"] == "openai"
    assert reply["metadata"]["usage"]["total_tokens"] > 0
    assert len(reply["metadata"]["sources"]) == 1
    sent = fresh_upstream.last_body
    assert sent["model"] == "fake-model"
    assert sent["stream"] is True
    assert sent["messages"][0]["role"] == "system"
    assert "You are terse." in sent["messages"][0]["content"]
    assert "30 days, no questions." in sent["messages"][0]["content"]
    assert sent["messages"][-1] == {"role": "user", "content": "what is the refund policy"}


@pytest.mark.parametrize(("mode", "status"), FAULTS)
async def test_faults_keep_the_message_and_recover(
    owner: ApiUser, fresh_upstream: FakeUpstream, mode: str, status: int
) -> None:
    bot = await llm_bot(owner, fresh_upstream.url)
    conversation = await start(owner, bot["id"])
    fresh_upstream.mode = mode  # type: ignore[assignment]
    failed = await post(owner, conversation["id"], f"question during {mode}")
    body = assert_problem(failed, status)
    assert body["type"] in ("/problems/upstream-failed", "/problems/upstream-timeout")
    assert [m["content"] for m in await history(owner, conversation["id"])] == [
        f"question during {mode}"
    ]
    fresh_upstream.mode = "ok"
    recovered = await post(owner, conversation["id"], "and now?")
    assert recovered.status_code == 201
    assert [m["seq"] for m in await history(owner, conversation["id"])] == [1, 2, 3]


async def test_connection_refused(owner: ApiUser) -> None:
    bot = await llm_bot(owner, f"http://127.0.0.1:{_closed_port()}/v1")
    conversation = await start(owner, bot["id"])
    body = assert_problem(await post(owner, conversation["id"], "anyone?"), 502)
    assert "connect" in str(body["detail"])
    assert len(await history(owner, conversation["id"])) == 1


async def test_a_stream_cut_after_it_began_ends_with_an_error_event(
    owner: ApiUser, fresh_upstream: FakeUpstream
) -> None:
    bot = await llm_bot(owner, fresh_upstream.url)
    conversation = await start(owner, bot["id"])
    fresh_upstream.mode = "cut_stream"
    response = await post(
        owner, conversation["id"], "tell me a long story", Accept="text/event-stream"
    )
    events = parse_sse(response.text)
    assert events[-1][0] == "error"
    assert events[-1][1]["status"] == 502
    assert all(name == "delta" for name, _ in events[:-1])
    fresh_upstream.mode = "ok"
    assert (await post(owner, conversation["id"], "again")).status_code == 201


async def test_transient_failures_are_retried_before_the_first_byte(
    owner: ApiUser, fresh_upstream: FakeUpstream
) -> None:
    bot = await llm_bot(owner, fresh_upstream.url)
    conversation = await start(owner, bot["id"])
    fresh_upstream.fail_first(2, status=503)
    response = await post(owner, conversation["id"], "hello")
    assert response.status_code == 201
    assert fresh_upstream.request_count == 3


async def test_the_key_is_read_from_the_environment_and_never_shown(
    owner: ApiUser, fresh_upstream: FakeUpstream
) -> None:
    secret = UPSTREAM_SECRET
    bot = await llm_bot(owner, fresh_upstream.url, api_key_env="FAKE_UPSTREAM_KEY")
    assert secret not in str(bot)
    conversation = await start(owner, bot["id"])
    ok = await post(owner, conversation["id"], "hi")
    assert ok.status_code == 201
    assert fresh_upstream.last_headers["authorization"] == f"Bearer {secret}"
    assert secret not in ok.text
    fresh_upstream.mode = "status_401"  # the fake echoes the key back, as OpenAI does
    failed = await post(owner, conversation["id"], "hi again")
    assert failed.status_code == 502
    assert secret not in failed.text
    patched = await owner.client.patch(
        f"/api/v1/bots/{bot['id']}",
        json={"engine_config": {**bot["engine_config"], "api_key_env": "UNSET_UPSTREAM_KEY"}},
        headers=owner.headers,
    )
    assert patched.status_code == 200, patched.text
    missing = await post(owner, conversation["id"], "and again")
    assert "UNSET_UPSTREAM_KEY" in assert_problem(missing, 502)["detail"]  # type: ignore[operator]

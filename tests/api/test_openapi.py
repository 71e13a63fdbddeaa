"""The OpenAPI document says what the API answers: tags, error bodies, credentials."""

from __future__ import annotations

from typing import Any

import pytest

from entrypoints.api.app import create_app
from entrypoints.bootstrap import build_container
from entrypoints.settings import Settings

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    app = create_app(build_container(Settings(database_url="memory://", seed_example_bot=False)))
    document: dict[str, Any] = app.openapi()
    return document


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(p, m, op) for p, ops in spec["paths"].items() for m, op in ops.items()]


def test_every_operation_has_one_declared_tag(spec: dict[str, Any]) -> None:
    declared = {tag["name"]: tag.get("description") for tag in spec["tags"]}
    assert all(declared.values()), declared
    for path, method, operation in _operations(spec):
        assert len(operation.get("tags", [])) == 1, (method, path, operation.get("tags"))
        assert operation["tags"][0] in declared, (method, path)


def test_every_error_answer_is_documented_as_a_problem(spec: dict[str, Any]) -> None:
    for path, method, operation in _operations(spec):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            content = response["content"]
            if path.startswith("/v1/"):
                assert content == {
                    "application/json": {"schema": {"$ref": "#/components/schemas/OpenAIError"}}
                }, (method, path, status)
            else:
                assert content == {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                }, (method, path, status)
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_bot_keys_are_offered_where_they_work_and_only_there(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert "email" in schemes["OAuth2PasswordBearer"]["description"]
    assert schemes["BotApiKey"] == {**schemes["BotApiKey"], "type": "http", "scheme": "bearer"}

    def accepts_bot_keys(path: str, method: str) -> bool:
        security = spec["paths"][path][method].get("security", [])
        return {"BotApiKey": []} in security

    assert accepts_bot_keys("/api/v1/conversations/{conversation_id}/messages", "post")
    assert accepts_bot_keys("/v1/chat/completions", "post")
    assert not accepts_bot_keys("/api/v1/bots", "post")
    assert not accepts_bot_keys("/api/v1/bots/{bot_id}/knowledge", "post")
    assert not accepts_bot_keys("/api/v1/users/me", "get")


def test_operation_ids_are_unique_and_readable(spec: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, _, operation in _operations(spec)]
    assert len(ids) == len(set(ids))
    assert "create_bot" in ids
    assert all("api_v1" not in operation_id for operation_id in ids)


def test_every_reference_resolves(spec: dict[str, Any]) -> None:
    import json
    import re

    schemas = spec["components"]["schemas"]
    for ref in set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(spec))):
        assert ref in schemas, ref

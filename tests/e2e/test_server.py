"""The real server over real sockets: what `make run` gives a newcomer."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.e2e


def test_health_and_readiness(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").status_code == 200


def test_swagger_ui_and_openapi_are_served(http: httpx.Client) -> None:
    docs = http.get("/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text
    spec = http.get("/openapi.json").json()
    assert spec["info"]["title"] == "chatbots"


def test_errors_are_problem_json_over_the_wire(http: httpx.Client) -> None:
    response = http.get("/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"

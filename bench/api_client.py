"""Set-up through our public API (httpx), exactly as a client would do it (see API.md)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

# A bulk request carries at most 5,000 entries (API.md); staying well under the service's
# default 2 MiB body limit too keeps the bench independent of CHATBOTS_MAX_BODY_BYTES.
BULK_MAX_ENTRIES = 5_000
BULK_MAX_BYTES = 1_500_000


class ApiError(RuntimeError):
    """Our API answered something the set-up cannot go on with; the message says what."""


def describe(method: str, path: str, response: httpx.Response) -> str:
    snippet = response.text[:300].replace("\n", " ")
    if response.status_code == 404:
        return (
            f"{method} {path} answered 404: the route is not implemented yet (or the resource "
            f"is missing). Body: {snippet}"
        )
    return f"{method} {path} answered {response.status_code}: {snippet}"


class ApiClient:
    def __init__(self, base_url: str, timeout: float = 120.0) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout)
        self.token: str | None = None

    def close(self) -> None:
        self._http.close()

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def call(
        self, method: str, path: str, *, expected: tuple[int, ...] = (200, 201), **kwargs: Any
    ) -> httpx.Response:
        try:
            response = self._http.request(method, path, headers=self.auth_headers, **kwargs)
        except httpx.HTTPError as error:
            raise ApiError(f"{method} {path} failed: {error!r}") from error
        if response.status_code not in expected:
            raise ApiError(describe(method, path, response))
        return response

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body: dict[str, Any] = response.json()
        except ValueError as error:
            raise ApiError(f"{response.request.url.path} did not answer JSON") from error
        return body

    def register(self, email: str, password: str, display_name: str) -> None:
        payload = {"email": email, "password": password, "display_name": display_name}
        self.call("POST", "/api/v1/auth/register", json=payload, expected=(201,))

    def login(self, email: str, password: str) -> str:
        response = self.call(
            "POST", "/api/v1/auth/token", data={"username": email, "password": password}
        )
        token = self._json(response).get("access_token")
        if not isinstance(token, str):
            raise ApiError("POST /api/v1/auth/token answered no access_token")
        self.token = token
        return token

    def create_bot(self, name: str, greeting: str) -> str:
        response = self.call(
            "POST", "/api/v1/bots", json={"name": name, "greeting": greeting}, expected=(201,)
        )
        return str(self._json(response)["id"])

    def add_knowledge(self, bot_id: str, entries: list[dict[str, Any]]) -> float:
        """Adds `entries` in as few bulk requests as the limits allow; returns the seconds spent."""
        started = time.perf_counter()
        batch: list[dict[str, Any]] = []
        size = 0
        for entry in entries:
            entry_size = len(json.dumps(entry)) + 2
            if batch and (len(batch) == BULK_MAX_ENTRIES or size + entry_size > BULK_MAX_BYTES):
                self._bulk(bot_id, batch)
                batch, size = [], 0
            batch.append(entry)
            size += entry_size
        if batch:
            self._bulk(bot_id, batch)
        return time.perf_counter() - started

    def _bulk(self, bot_id: str, batch: list[dict[str, Any]]) -> None:
        self.call(
            "POST",
            f"/api/v1/bots/{bot_id}/knowledge/bulk",
            json={"entries": batch},
            expected=(201,),
        )

    def publish(self, bot_id: str) -> None:
        self.call("POST", f"/api/v1/bots/{bot_id}/publish")

    def open_conversation(self, bot_id: str) -> str:
        response = self.call(
            "POST", f"/api/v1/bots/{bot_id}/conversations", json={}, expected=(201,)
        )
        return str(self._json(response)["id"])

    def post_message(self, conversation_id: str, content: str) -> dict[str, Any]:
        response = self.call(
            "POST",
            f"/api/v1/conversations/{conversation_id}/messages",
            json={"content": content},
            expected=(201,),
        )
        return self._json(response)

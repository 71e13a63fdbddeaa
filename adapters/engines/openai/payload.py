"""The request we send: the chat-completions body and headers for one reply.

Apart from the exchange (`upstream`) so that what leaves the service can be read in one place:
the system prompt with the knowledge context, the bounded history, the new message, and the
key in the `Authorization` header and nowhere else.
"""

from __future__ import annotations

from typing import Any

from adapters.engines.openai.config import UpstreamSettings
from application.ports import ReplyRequest, RetrievedEntry


def _system_message(system_prompt: str, entries: list[RetrievedEntry]) -> str:
    parts = [system_prompt.strip()] if system_prompt.strip() else []
    if entries:
        context = "\n\n".join(f"Q: {entry.question}\nA: {entry.answer}" for entry in entries)
        parts.append(
            "Knowledge that may help answer the user (use it where it is relevant):\n\n" + context
        )
    return "\n\n".join(parts)


def chat_payload(
    request: ReplyRequest, settings: UpstreamSettings, entries: list[RetrievedEntry]
) -> dict[str, Any]:
    """System prompt plus context, then the bounded history in order, then the new message."""
    messages: list[dict[str, str]] = []
    if system := _system_message(request.bot.system_prompt, entries):
        messages.append({"role": "system", "content": system})
    messages.extend(
        {"role": str(message.role), "content": message.content}
        for message in request.history
        if message.content
    )
    messages.append({"role": "user", "content": request.message})
    payload: dict[str, Any] = {
        "model": settings.model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if settings.temperature is not None:
        payload["temperature"] = settings.temperature
    if settings.max_tokens is not None:
        payload["max_tokens"] = settings.max_tokens
    return payload


def request_headers(api_key: str | None) -> dict[str, str]:
    headers = {"Accept": "text/event-stream", "Content-Type": "application/json"}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers

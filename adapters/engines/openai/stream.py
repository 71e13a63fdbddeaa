"""Reading the reply: what each chunk an upstream streams adds, and whether the stream ended well.

Apart from the HTTP exchange (`upstream`) because these are rules about the chat-completions
format, not about the network: a chunk must be a JSON object, only choice 0 counts, the model
name and token usage are taken when sane, and a reply is complete only with `[DONE]` or a
`finish_reason`. No deadline or retry is decided here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adapters.engines.openai.config import MAX_MODEL_NAME_LENGTH
from adapters.engines.openai.redaction import Redactor, describe_error_object
from adapters.engines.openai.sse import StreamEvent
from application.errors import UpstreamFailed

logger = logging.getLogger(__name__)


def _token_usage(raw: object) -> dict[str, int] | None:
    if not isinstance(raw, Mapping):
        return None
    counts = {
        key: value
        for key in ("prompt_tokens", "completion_tokens", "total_tokens")
        if isinstance(value := raw.get(key), int) and not isinstance(value, bool)
    }
    if "prompt_tokens" not in counts or "completion_tokens" not in counts:
        return None
    counts.setdefault("total_tokens", counts["prompt_tokens"] + counts["completion_tokens"])
    return counts


@dataclass
class ReplyProgress:
    """What the stream has told us so far; decides whether its end was a proper one."""

    model: str
    redact: Redactor
    usage: dict[str, int] | None = None
    finish_reason: str | None = None
    done: bool = False

    @property
    def complete(self) -> bool:
        return self.done or self.finish_reason is not None

    def take_event(self, event: StreamEvent) -> str:
        """Returns the text the event adds to the reply ('' for none)."""
        if event.data.strip() == "[DONE]":
            self.done = True
            return ""
        try:
            chunk = json.loads(event.data)
        except ValueError:
            raise UpstreamFailed(
                "the model upstream sent a malformed stream chunk (invalid JSON)"
            ) from None
        if not isinstance(chunk, Mapping):
            raise UpstreamFailed("the model upstream sent a malformed stream chunk (not an object)")
        if event.kind == "error" or chunk.get("error"):
            described = describe_error_object(chunk.get("error", chunk), self.redact)
            logger.warning("openai engine: the upstream's stream reported: %s", described)
            raise UpstreamFailed("the model upstream reported an error in the stream")
        return self.take_chunk(chunk, delta_key="delta")

    def take_chunk(self, chunk: Mapping[str, Any], *, delta_key: str) -> str:
        """Reads one `chat.completion.chunk` (delta) or `chat.completion` (message) object."""
        model = chunk.get("model")
        if isinstance(model, str) and 0 < len(model.strip()) <= MAX_MODEL_NAME_LENGTH:
            self.model = model.strip()  # it is stored with the reply: keep only a sane name
        if (usage := _token_usage(chunk.get("usage"))) is not None:
            self.usage = usage
        choices = chunk.get("choices")
        if choices is None:
            return ""
        if not isinstance(choices, list):
            raise UpstreamFailed("the model upstream sent a malformed chunk (choices)")
        first = next(
            (c for c in choices if isinstance(c, Mapping) and c.get("index", 0) == 0), None
        )
        if first is None:
            return ""
        if isinstance(reason := first.get("finish_reason"), str) and reason:
            self.finish_reason = reason
        delta = first.get(delta_key)
        if delta is None:
            return ""
        if not isinstance(delta, Mapping):
            raise UpstreamFailed(f"the model upstream sent a malformed chunk ({delta_key})")
        content = delta.get("content")
        if content is None:
            return ""
        if not isinstance(content, str):
            raise UpstreamFailed("the model upstream sent a malformed chunk (content)")
        return content

    def take_whole_answer(self, body: bytes) -> str:
        """Reads a whole `chat.completion` (a server that ignored `stream: true`): its text."""
        try:
            answer = json.loads(body)
        except ValueError:
            raise UpstreamFailed(
                "the model upstream sent a malformed answer (invalid JSON)"
            ) from None
        if not isinstance(answer, Mapping):
            raise UpstreamFailed("the model upstream sent a malformed answer (not an object)")
        if answer.get("error"):
            described = describe_error_object(answer["error"], self.redact)
            logger.warning("openai engine: the upstream's answer reported: %s", described)
            raise UpstreamFailed("the model upstream reported an error")
        text = self.take_chunk(answer, delta_key="message")
        self.done = True
        return text

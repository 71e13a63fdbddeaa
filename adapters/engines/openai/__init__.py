"""The `openai` reply engine: any OpenAI-compatible chat-completions server answers for a bot.

The bot's `engine_config` names the upstream (`base_url`, `model`, ...) and, through
`api_key_env`, the *environment variable* that holds its key. Only variables the operator offers
(`CHATBOTS_UPSTREAM_KEYS`) qualify, and the engine holds just those, read once at start: a bot
can never make the server send it another secret of its environment. The key is sent in the
`Authorization` header and nowhere else; what an upstream says goes through a redactor and into
the log only, because upstreams echo keys ("Incorrect API key provided: sk-...") and an error
page could be an internal service's.

Failure policy, in one place:
- Nothing waits unbounded: connecting, the first streamed event, each gap between events and
  the whole reply each have a deadline (`asyncio.timeout_at` around every await that reads from
  the network, never around a `yield`, so a slow consumer is never cancelled by our clock). The
  waits count events that carry data, not bytes: keep-alive comments do not extend them.
- 408/429/5xx answers and connection failures are retried with exponential backoff, honouring
  `Retry-After` up to a cap, but only before the upstream has streamed anything: once a reply
  has started, a retry could repeat text the caller has already shown.
- Timeouts become `UpstreamTimeout` (504); everything else becomes `UpstreamFailed` (502), with a
  short `detail` in our own words that carries the upstream status where there is one, and never
  the upstream's text or the low-level error (which would tell one network target from another).
  The client refuses private and local addresses (`adapters.outbound`) with one fixed detail.

The rooms, from the outside in:
- `config`: what a bot's `engine_config` may say (and `UpstreamSettings`, the same rules at call
  time); `keys`: which variables the operator offers as upstream keys.
- `engine`: `OpenAICompatibleEngine`, the `ReplyEngine` port; `upstream`: the HTTP exchange and
  the shared client; `deadlines`: the waits and the bounded reads; `payload`: the request we
  send; `stream`: the chat-completions chunks we read; `sse`: the event-stream framing;
  `redaction`: making what an upstream says safe to log.

Only `config` and `keys` are imported with this package: checking a bot's settings (and the
composition root) must not load httpx, which a worker whose bots all answer from knowledge never
needs (~6 MB). The names that need it (`OpenAICompatibleEngine`, `build_http_client`,
`ADDRESS_REFUSED`) are imported from their modules when first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.engines import loaded_on_first_use
from adapters.engines.openai.config import validate_openai_config
from adapters.engines.openai.keys import checked_offer, offered_upstream_keys, refusal_of

if TYPE_CHECKING:
    from adapters.engines.openai.engine import OpenAICompatibleEngine
    from adapters.engines.openai.upstream import ADDRESS_REFUSED, build_http_client

__all__ = [
    "ADDRESS_REFUSED",
    "OpenAICompatibleEngine",
    "build_http_client",
    "checked_offer",
    "offered_upstream_keys",
    "refusal_of",
    "validate_openai_config",
]

# Public names whose modules import httpx, and those modules.
__getattr__ = loaded_on_first_use(
    __name__,
    {
        "OpenAICompatibleEngine": "adapters.engines.openai.engine",
        "build_http_client": "adapters.engines.openai.upstream",
        "ADDRESS_REFUSED": "adapters.engines.openai.upstream",
    },
)

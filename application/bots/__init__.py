"""Bot use cases, one room per intention: `lifecycle` (create, read, configure, publish,
archive, delete), `knowledge` (entries, bulk import, what engines index), `api_keys` (issue,
list, revoke, authenticate). `versions` is the optimistic concurrency the first two share.

The composition root builds one service per room (`BotLifecycle`, `BotKnowledge`,
`BotApiKeys`); this package is their public face."""

from application.bots.api_keys import (
    API_KEY_PREFIX,
    LAST_USED_RESOLUTION,
    BotApiKeys,
    IssuedApiKey,
    api_key_prefix,
    hash_api_key,
    is_api_key,
)
from application.bots.knowledge import MAX_BULK_ENTRIES, BotKnowledge, load_knowledge
from application.bots.lifecycle import BotLifecycle, BotSettings, BotView

__all__ = [
    "API_KEY_PREFIX",
    "LAST_USED_RESOLUTION",
    "MAX_BULK_ENTRIES",
    "BotApiKeys",
    "BotKnowledge",
    "BotLifecycle",
    "BotSettings",
    "BotView",
    "IssuedApiKey",
    "api_key_prefix",
    "hash_api_key",
    "is_api_key",
    "load_knowledge",
]

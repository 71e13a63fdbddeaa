"""Bot API keys: the credentials a member's services chat with one bot by. Create one (its
secret shown once, stored hashed), list, revoke; `authenticate_api_key` turns a presented key
into its principal. `cbk_<12 hex>_<secret>`: the public prefix finds the key, the hash checks it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from application.access import manageable_bot
from application.actors import Actor, BotKeyActor
from application.errors import AuthenticationFailed, NotFound
from application.ports import Clock, IdGenerator, UnitOfWorkFactory
from domain.bots import BotApiKey

API_KEY_PREFIX = "cbk_"
# Writing `last_used_at` on every request would turn each chat read into a write; once a
# minute is precise enough for "when was this key last used".
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedApiKey:
    key: BotApiKey
    secret: str  # shown once, never stored


def hash_api_key(raw_key: str) -> str:
    # 256-bit random secrets: a fast hash is enough (nothing to brute-force).
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_prefix(raw_key: str) -> str | None:
    """`cbk_<12 hex>_<secret>` -> `cbk_<12 hex>`, the public, unique, listed part."""
    if not raw_key.startswith(API_KEY_PREFIX):
        return None
    public, sep, secret = raw_key[len(API_KEY_PREFIX) :].partition("_")
    if not sep or len(public) != 12 or not secret:
        return None
    return API_KEY_PREFIX + public


def is_api_key(raw_token: str) -> bool:
    return raw_token.startswith(API_KEY_PREFIX)


class BotApiKeys:
    def __init__(self, *, uow_factory: UnitOfWorkFactory, clock: Clock, ids: IdGenerator) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._ids = ids

    async def create_api_key(self, actor: Actor, bot_id: UUID, name: str) -> IssuedApiKey:
        """A key that acts for this bot only. The secret is returned once and stored hashed."""
        public = secrets.token_hex(6)
        raw_key = f"{API_KEY_PREFIX}{public}_{secrets.token_urlsafe(32)}"
        async with self._uow_factory() as uow:
            bot = await manageable_bot(uow, actor, bot_id)
            key = BotApiKey(
                id=self._ids.new_id(),
                bot_id=bot.id,
                name=name.strip() or "API key",
                prefix=API_KEY_PREFIX + public,
                secret_hash=hash_api_key(raw_key),
                created_at=self._clock.now(),
            )
            await uow.api_keys.add(key)
            await uow.commit()
        return IssuedApiKey(key=key, secret=raw_key)

    async def list_api_keys(self, actor: Actor, bot_id: UUID) -> list[BotApiKey]:
        async with self._uow_factory(read_only=True) as uow:
            await manageable_bot(uow, actor, bot_id)
            return await uow.api_keys.list_page(bot_id)

    async def revoke_api_key(self, actor: Actor, bot_id: UUID, key_id: UUID) -> None:
        """Revoked keys stop working at once; they stay listed (with `revoked_at`) for audit."""
        async with self._uow_factory() as uow:
            await manageable_bot(uow, actor, bot_id)
            key = await uow.api_keys.get(bot_id, key_id)
            if key is None:
                raise NotFound("No such API key.")
            key.revoke(self._clock.now())
            await uow.commit()

    async def authenticate_api_key(self, raw_key: str) -> BotKeyActor:
        """Turn a bot API key into its principal; unknown and revoked keys, and keys of a
        deactivated owner's bots, are refused alike."""
        prefix = api_key_prefix(raw_key)
        if prefix is None:
            raise AuthenticationFailed("The API key is invalid or revoked.")
        async with self._uow_factory(read_only=True) as uow:
            key = await uow.api_keys.get_by_prefix(prefix)
            if (
                key is None
                or not key.is_active
                or not hmac.compare_digest(key.secret_hash, hash_api_key(raw_key))
            ):
                raise AuthenticationFailed("The API key is invalid or revoked.")
            # A key acts for its bot's owner: a deactivated owner's keys stop with the owner.
            bot = await uow.bots.get(key.bot_id)
            owner = await uow.users.get(bot.owner_id) if bot is not None else None
        if owner is None or not owner.is_active:
            raise AuthenticationFailed("The API key is invalid or revoked.")
        now = self._clock.now()
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
            async with self._uow_factory() as uow:
                stored = await uow.api_keys.get(key.bot_id, key.id)
                if stored is not None:
                    stored.record_use(now)
                    await uow.commit()
        return BotKeyActor(bot_id=key.bot_id, key_id=key.id)

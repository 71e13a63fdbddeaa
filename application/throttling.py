"""Attempt limits: sign-ins per account and per client address, registrations per address.

Each attempt is counted before the expensive part (an Argon2 hash, ~0.15 s) and checked after
counting, so attempts that arrive together cannot all read the same old count and all pass. What
turns out not to be a failure is taken back: a refused attempt (it cost nothing and told the
caller nothing), a correct password, an error that was not the caller's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from application.errors import AuthenticationFailed, Throttled
from application.ports import AttemptCounter, HashingBusy

TOO_MANY_SIGN_INS = "Too many failed sign-in attempts; try again later."
TOO_MANY_REGISTRATIONS = "Too many registrations from this address; try again later."
HASHING_BUSY = "Too many sign-ups at once; try again in a moment."
HASHING_BUSY_RETRY_SECONDS = 1


@dataclass(frozen=True)
class Limit:
    attempts: int
    window_seconds: int


class AttemptLimits:
    def __init__(
        self,
        counter: AttemptCounter,
        *,
        sign_ins_per_account: Limit,
        sign_ins_per_address: Limit,
        registrations_per_address: Limit,
    ) -> None:
        self._counter = counter
        self._per_account = sign_ins_per_account
        self._per_address = sign_ins_per_address
        self._registrations = registrations_per_address

    async def _admit(self, key: str, limit: Limit, refusal: str) -> None:
        attempts, seconds_left = await self._counter.hit(key, limit.window_seconds)
        if attempts > limit.attempts:
            await self._counter.refund(key)
            raise Throttled(refusal, seconds_left)

    @asynccontextmanager
    async def sign_in(self, account: str, address: str) -> AsyncIterator[None]:
        """Wraps one password verification. A wrong password (`AuthenticationFailed`) stays
        counted on both keys. A right one forgives the account's earlier typos, and takes back
        only its own attempt on the address: the address's other failures may be a spray over
        other accounts."""
        account_key, address_key = f"login:account:{account}", f"login:address:{address}"
        await self._admit(account_key, self._per_account, TOO_MANY_SIGN_INS)
        try:
            await self._admit(address_key, self._per_address, TOO_MANY_SIGN_INS)
        except Throttled:
            await self._counter.refund(account_key)
            raise
        try:
            yield
        except AuthenticationFailed:
            raise
        except Exception:
            # Not the caller's failure (a database error): it must not bring a lock-out closer.
            await self._counter.refund(account_key)
            await self._counter.refund(address_key)
            raise
        await self._counter.reset(account_key)
        await self._counter.refund(address_key)

    @asynccontextmanager
    async def registration(self, address: str) -> AsyncIterator[None]:
        """Wraps the hash of a new account's password, asked for with `wait=False`: a
        registration that finds the hashing capacity taken is refused at once (and not counted),
        so sign-ins never queue behind a registration flood."""
        key = f"register:address:{address}"
        await self._admit(key, self._registrations, TOO_MANY_REGISTRATIONS)
        try:
            yield
        except HashingBusy:
            await self._counter.refund(key)
            raise Throttled(HASHING_BUSY, HASHING_BUSY_RETRY_SECONDS) from None

"""Identity use cases: registration, sign-in with rotating refresh tokens, accounts, admin."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from application.actors import UserActor
from application.errors import (
    AuthenticationFailed,
    Conflict,
    DuplicateKey,
    Forbidden,
    NotFound,
)
from application.pagination import Keyset, Page, clamp_limit, decode_cursor, paginate
from application.ports import (
    AccessTokenIssuer,
    AttemptCounter,
    Clock,
    IdGenerator,
    PasswordHasher,
    UnitOfWork,
    UnitOfWorkFactory,
)
from application.throttling import AttemptLimits, Limit
from domain.errors import InvalidValue
from domain.users import RefreshToken, Role, User, check_password_policy, normalize_email

WRONG_CREDENTIALS = "Incorrect email or password."
INVALID_REFRESH = "The refresh token is invalid, expired or revoked."


@dataclass(frozen=True)
class IdentityPolicy:
    """Sign-in attempts are limited per account (tight: guessing one password) and per client
    address (loose: a NAT, an office proxy or a dev machine puts many people on one address, but
    a spray over many accounts from one address still stops). Registrations are limited per
    address, since each costs a password hash and makes an account."""

    refresh_token_ttl: timedelta = timedelta(days=30)
    login_max_failures: int = 5
    login_window_seconds: int = 900
    login_max_failures_per_address: int = 100
    register_max_per_address: int = 20
    register_window_seconds: int = 3600


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    token_type: str = "bearer"


def hash_refresh_token(token: str) -> str:
    # The secret has 256 bits of entropy: a fast hash suffices (no dictionary to attack).
    return hashlib.sha256(token.encode()).hexdigest()


class IdentityService:
    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        hasher: PasswordHasher,
        tokens: AccessTokenIssuer,
        attempts: AttemptCounter,
        clock: Clock,
        ids: IdGenerator,
        policy: IdentityPolicy | None = None,
    ) -> None:
        self._uow_factory = uow_factory
        self._hasher = hasher
        self._tokens = tokens
        self._clock = clock
        self._ids = ids
        self._policy = policy or IdentityPolicy()
        p = self._policy
        self._limits = AttemptLimits(
            attempts,
            sign_ins_per_account=Limit(p.login_max_failures, p.login_window_seconds),
            sign_ins_per_address=Limit(p.login_max_failures_per_address, p.login_window_seconds),
            registrations_per_address=Limit(p.register_max_per_address, p.register_window_seconds),
        )

    # --- registration and sign-in ------------------------------------------------------------

    async def register(
        self,
        email: str,
        password: str,
        display_name: str,
        role: Role = Role.MEMBER,
        *,
        client_address: str | None = None,
    ) -> User:
        """Create an account. The email is normalised (case, spaces); a taken email is a 409.
        Too many registrations from one address, or too many at once, are refused with 429."""
        check_password_policy(password)
        normalised = normalize_email(email)
        if client_address is None:  # the command line's create_admin: neither limited nor shed
            password_hash = await self._hasher.hash(password)
        else:
            async with self._limits.registration(client_address):
                password_hash = await self._hasher.hash(password, wait=False)
        user = User.register(
            id=self._ids.new_id(),
            email=normalised,
            display_name=display_name,
            password_hash=password_hash,
            now=self._clock.now(),
            role=role,
        )
        try:
            async with self._uow_factory() as uow:
                if await uow.users.get_by_email(normalised) is not None:
                    raise Conflict("An account with this email already exists.")
                await uow.users.add(user)
                await uow.commit()
        except DuplicateKey as error:  # lost a race with a concurrent registration
            raise Conflict("An account with this email already exists.") from error
        return user

    async def login(self, email: str, password: str, client_address: str) -> TokenPair:
        """Exchange credentials for tokens. Unknown email and wrong password look the same, in
        answer and in time; repeated failures per account or per address are throttled."""
        try:
            normalised = normalize_email(email)
        except InvalidValue:
            normalised = email.strip().lower()
        async with self._limits.sign_in(normalised, client_address):
            return await self._verify_and_issue(normalised, password)

    async def _verify_and_issue(self, normalised: str, password: str) -> TokenPair:
        # Argon2 runs outside any transaction: a slow hash must not hold a connection or a lock.
        async with self._uow_factory(read_only=True) as uow:
            found = await uow.users.get_by_email(normalised)
        if found is None:
            await self._hasher.verify_dummy(password)
            matches, new_hash = False, None
        else:
            matches, new_hash = await self._hasher.verify(password, found.password_hash)
        if found is None or not matches or not found.is_active:
            raise AuthenticationFailed(WRONG_CREDENTIALS)
        async with self._uow_factory() as uow:
            user = await uow.users.get(found.id)
            if user is None or not user.is_active:
                raise AuthenticationFailed(WRONG_CREDENTIALS)
            if new_hash is not None:  # parameters changed since this hash was made
                user.change_password_hash(new_hash, self._clock.now())
            pair = await self._issue_pair(uow, user, family_id=self._ids.new_id())
            await uow.commit()
        return pair

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Rotate: each refresh token works once. Presenting a used one means it leaked, so its
        whole family is revoked and the caller must sign in again."""
        async with self._uow_factory() as uow:
            stored = await uow.refresh_tokens.get_by_hash_for_update(
                hash_refresh_token(refresh_token)
            )
            if stored is None:
                raise AuthenticationFailed(INVALID_REFRESH)
            now = self._clock.now()
            if stored.used_at is not None or stored.revoked_at is not None:
                await uow.refresh_tokens.revoke_family(stored.family_id, now)
                await uow.commit()
                raise AuthenticationFailed(INVALID_REFRESH)
            user = await uow.users.get(stored.user_id)
            if not stored.is_usable(now) or user is None or not user.is_active:
                raise AuthenticationFailed(INVALID_REFRESH)
            stored.mark_used(now)
            pair = await self._issue_pair(uow, user, family_id=stored.family_id)
            await uow.commit()
        return pair

    async def logout(self, refresh_token: str) -> None:
        """Revoke the token's family. Unknown tokens are ignored: logging out twice is fine."""
        async with self._uow_factory() as uow:
            stored = await uow.refresh_tokens.get_by_hash(hash_refresh_token(refresh_token))
            if stored is not None:
                await uow.refresh_tokens.revoke_family(stored.family_id, self._clock.now())
                await uow.commit()

    async def _issue_pair(self, uow: UnitOfWork, user: User, *, family_id: UUID) -> TokenPair:
        now = self._clock.now()
        access_token, expires_in = self._tokens.issue(user, now)
        secret = secrets.token_urlsafe(32)
        await uow.refresh_tokens.add(
            RefreshToken(
                id=self._ids.new_id(),
                user_id=user.id,
                family_id=family_id,
                token_hash=hash_refresh_token(secret),
                issued_at=now,
                expires_at=now + self._policy.refresh_token_ttl,
            )
        )
        return TokenPair(access_token=access_token, expires_in=expires_in, refresh_token=secret)

    # --- the signed-in caller ----------------------------------------------------------------

    async def authenticate(self, access_token: str) -> UserActor:
        """Turn a bearer token into the caller. The user is read on every request, so a
        deactivated or deleted account stops working at once, not when its token expires."""
        claims = self._tokens.verify(access_token, self._clock.now())
        async with self._uow_factory(read_only=True) as uow:
            user = await uow.users.get(claims.user_id)
        if user is None or not user.is_active:
            raise AuthenticationFailed("The account is deactivated or no longer exists.")
        if claims.session_generation != user.session_generation:
            raise AuthenticationFailed(
                "The access token was revoked (the password changed); sign in again."
            )
        return UserActor(user_id=user.id, role=user.role)

    async def me(self, actor: UserActor) -> User:
        async with self._uow_factory(read_only=True) as uow:
            user = await uow.users.get(actor.user_id)
        if user is None:
            raise AuthenticationFailed("The account no longer exists.")
        return user

    async def update_me(self, actor: UserActor, display_name: str) -> User:
        async with self._uow_factory() as uow:
            user = await uow.users.get(actor.user_id)
            if user is None:
                raise AuthenticationFailed("The account no longer exists.")
            user.rename(display_name, self._clock.now())
            await uow.commit()
        return user

    async def change_password(
        self, actor: UserActor, current_password: str, new_password: str
    ) -> None:
        """Change the password and sign out every session: all refresh tokens are revoked and
        every access token issued before stops working at once (the caller's too)."""
        check_password_policy(new_password)
        current = await self.me(actor)
        matches, _ = await self._hasher.verify(current_password, current.password_hash)
        if not matches:
            raise InvalidValue("current_password", "is not the current password")
        new_hash = await self._hasher.hash(new_password)
        async with self._uow_factory() as uow:
            user = await uow.users.get(actor.user_id)
            if user is None:
                raise AuthenticationFailed("The account no longer exists.")
            now = self._clock.now()
            user.change_password_hash(new_hash, now)
            user.end_sessions(now)
            await uow.refresh_tokens.revoke_all_for_user(user.id, now)
            await uow.commit()

    # --- administration ----------------------------------------------------------------------

    async def list_users(
        self, actor: UserActor, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[User]:
        """Admins only: every account, oldest first."""
        _require_admin(actor)
        size = clamp_limit(limit)
        async with self._uow_factory(read_only=True) as uow:
            rows = await uow.users.list_page(after=decode_cursor(cursor), limit=size + 1)
        return paginate(rows, size, lambda u: Keyset(u.created_at, u.id))

    async def update_user(
        self,
        actor: UserActor,
        user_id: UUID,
        *,
        role: Role | None = None,
        is_active: bool | None = None,
    ) -> User:
        """Admins only: change a role or (de)activate. Deactivation signs the user out at once.
        The last active admin cannot be demoted or deactivated (nobody could undo it)."""
        _require_admin(actor)
        async with self._uow_factory() as uow:
            user = await uow.users.get(user_id)
            if user is None:
                raise NotFound("No such user.")
            now = self._clock.now()
            loses_admin = (
                user.is_admin
                and user.is_active
                and ((role is not None and role is not Role.ADMIN) or is_active is False)
            )
            if loses_admin and await uow.users.count_admins() <= 1:
                raise Conflict("The last active admin cannot be demoted or deactivated.")
            if role is not None:
                user.assign_role(role, now)
            if is_active is not None:
                user.set_active(is_active, now)
                if not is_active:
                    await uow.refresh_tokens.revoke_all_for_user(user.id, now)
            await uow.commit()
        return user

    async def create_admin(self, email: str, password: str, display_name: str) -> User:
        """Bootstrap: the first admin is made from the command line, not over HTTP."""
        return await self.register(email, password, display_name, role=Role.ADMIN)


def _require_admin(actor: UserActor) -> None:
    if not actor.is_admin:
        raise Forbidden("Only admins may do this.")

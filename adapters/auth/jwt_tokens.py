"""Access tokens: JWTs through Authlib's JOSE stack (joserfc). Every JOSE import lives here.

HS256 only, pinned on decode; every claim is essential; the header carries `typ: at+jwt`
(RFC 9068) so an access token cannot be confused with another kind of JWT.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from application.errors import AuthenticationFailed
from application.ports import AccessClaims
from domain.users import User

ALGORITHM = "HS256"
TOKEN_TYPE = "at+jwt"
# Clocks of several workers drift a little; a few seconds of leeway keeps fresh tokens valid.
LEEWAY_SECONDS = 5
# A client sends the same token with every request until it expires. Checking its signature and
# fixed claims once, and only its times on each later use, saved ~10% of the CPU of an
# authenticated read (bench/). Keyed by the whole token, so a changed byte is a new entry.
VERIFIED_TOKENS_KEPT = 4096


class JwtAccessTokenIssuer:
    def __init__(self, secret: str, *, issuer: str, audience: str, ttl_seconds: int) -> None:
        self._key = OctKey.import_key(secret)
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl_seconds
        self._verified: dict[str, _VerifiedToken] = {}

    def issue(self, user: User, now: datetime) -> tuple[str, int]:
        issued_at = int(now.timestamp())
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": str(user.id),
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + self._ttl,
            "jti": uuid.uuid4().hex,
            "role": user.role.value,
            "gen": user.session_generation,
        }
        header = {"alg": ALGORITHM, "typ": TOKEN_TYPE}
        return jwt.encode(header, claims, self._key, algorithms=[ALGORITHM]), self._ttl

    def verify(self, token: str, now: datetime) -> AccessClaims:
        timestamp = int(now.timestamp())
        verified = self._verified.get(token)
        if verified is None:
            verified = self._decode(token, timestamp)
            if len(self._verified) >= VERIFIED_TOKENS_KEPT:
                self._verified.pop(next(iter(self._verified)), None)  # the oldest
            self._verified[token] = verified
        verified.check_times(timestamp)
        return verified.claims

    def _decode(self, token: str, timestamp: int) -> _VerifiedToken:
        try:
            decoded = jwt.decode(token, self._key, algorithms=[ALGORITHM])
            if decoded.header.get("typ") != TOKEN_TYPE:
                raise AuthenticationFailed("not an access token")
            registry = jwt.JWTClaimsRegistry(
                now=timestamp,
                leeway=LEEWAY_SECONDS,
                iss={"essential": True, "value": self._issuer},
                aud={"essential": True, "value": self._audience},
                sub={"essential": True},
                exp={"essential": True},
                nbf={"essential": True},
                iat={"essential": True},
                jti={"essential": True},
                role={"essential": True, "values": ["admin", "member"]},
                gen={"essential": True},
            )
            registry.validate(decoded.claims)
            claims = decoded.claims
            return _VerifiedToken(
                claims=AccessClaims(
                    user_id=uuid.UUID(str(claims["sub"])),
                    role=str(claims["role"]),
                    token_id=str(claims["jti"]),
                    expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
                    session_generation=_generation(claims["gen"]),
                ),
                not_before=int(claims["nbf"]),
                issued_at=int(claims["iat"]),
                expires=int(claims["exp"]),
            )
        except AuthenticationFailed:
            raise
        # OverflowError: a correctly signed token may still carry a time no datetime can hold.
        except (JoseError, ValueError, TypeError, KeyError, OverflowError) as error:
            raise AuthenticationFailed("the access token is invalid or expired") from error


def _generation(raw: object) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise ValueError("gen must be a non-negative integer")
    return raw


@dataclass(frozen=True, slots=True)
class _VerifiedToken:
    """A token whose signature and fixed claims passed; only the clock can still reject it."""

    claims: AccessClaims
    not_before: int
    issued_at: int
    expires: int

    def check_times(self, timestamp: int) -> None:
        if self.expires < timestamp - LEEWAY_SECONDS:
            raise AuthenticationFailed("the access token is invalid or expired")
        if self.not_before > timestamp + LEEWAY_SECONDS:
            raise AuthenticationFailed("the access token is not valid yet")
        if self.issued_at > timestamp + LEEWAY_SECONDS:
            raise AuthenticationFailed("the token was issued in the future")

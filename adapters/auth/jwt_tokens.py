"""Access tokens: JWTs through Authlib's JOSE stack (joserfc). Every JOSE import lives here.

HS256 only, pinned on decode; every claim is essential; the header carries `typ: at+jwt`
(RFC 9068) so an access token cannot be confused with another kind of JWT.
"""

from __future__ import annotations

import uuid
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


class JwtAccessTokenIssuer:
    def __init__(self, secret: str, *, issuer: str, audience: str, ttl_seconds: int) -> None:
        self._key = OctKey.import_key(secret)
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl_seconds

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
        }
        header = {"alg": ALGORITHM, "typ": TOKEN_TYPE}
        return jwt.encode(header, claims, self._key, algorithms=[ALGORITHM]), self._ttl

    def verify(self, token: str, now: datetime) -> AccessClaims:
        timestamp = int(now.timestamp())
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
            )
            registry.validate(decoded.claims)
            claims = decoded.claims
            if int(claims["iat"]) > timestamp + LEEWAY_SECONDS:
                raise AuthenticationFailed("the token was issued in the future")
            return AccessClaims(
                user_id=uuid.UUID(str(claims["sub"])),
                role=str(claims["role"]),
                token_id=str(claims["jti"]),
                expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            )
        except AuthenticationFailed:
            raise
        except (JoseError, ValueError, TypeError, KeyError) as error:
            raise AuthenticationFailed("the access token is invalid or expired") from error

"""Access tokens: what verification accepts and refuses, first use and cached uses alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters.auth import jwt_tokens
from adapters.auth.jwt_tokens import LEEWAY_SECONDS, JwtAccessTokenIssuer
from application.errors import AuthenticationFailed
from tests.factories import UserFactory

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TTL = 900


def _issuer(secret: str = "k" * 40) -> JwtAccessTokenIssuer:
    return JwtAccessTokenIssuer(secret, issuer="test", audience="api", ttl_seconds=TTL)


def test_a_token_verifies_again_and_again_until_it_expires() -> None:
    issuer, user = _issuer(), UserFactory()
    token, _ = issuer.issue(user, NOW)
    for later in (0, 60, TTL + LEEWAY_SECONDS):
        claims = issuer.verify(token, NOW + timedelta(seconds=later))
        assert claims.user_id == user.id
        assert claims.role == "member"
    with pytest.raises(AuthenticationFailed):
        issuer.verify(token, NOW + timedelta(seconds=TTL + LEEWAY_SECONDS + 1))


def test_a_token_is_refused_before_it_was_issued_even_after_it_verified() -> None:
    issuer = _issuer()
    token, _ = issuer.issue(UserFactory(), NOW)
    issuer.verify(token, NOW)
    with pytest.raises(AuthenticationFailed):
        issuer.verify(token, NOW - timedelta(seconds=LEEWAY_SECONDS + 1))


def test_a_changed_token_is_refused_after_the_genuine_one_verified() -> None:
    issuer = _issuer()
    token, _ = issuer.issue(UserFactory(), NOW)
    issuer.verify(token, NOW)
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(AuthenticationFailed):
        issuer.verify(tampered, NOW)
    with pytest.raises(AuthenticationFailed):
        _issuer("x" * 40).verify(token, NOW)  # another service's secret


def test_the_remembered_tokens_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jwt_tokens, "VERIFIED_TOKENS_KEPT", 3)
    issuer = _issuer()
    tokens = [issuer.issue(UserFactory(), NOW)[0] for _ in range(5)]
    for token in tokens:
        issuer.verify(token, NOW)
    assert list(issuer._verified) == tokens[-3:]
    assert issuer.verify(tokens[0], NOW).user_id  # forgotten, so checked in full again

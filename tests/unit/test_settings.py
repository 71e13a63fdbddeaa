"""Settings: environment variables, and refusing unsafe defaults in production."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from adapters.sqlalchemy.database import DEFAULT_DATABASE_URL
from entrypoints.settings import Settings

pytestmark = pytest.mark.unit


def test_defaults_to_the_embedded_sqlite_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATBOTS_DATABASE_URL", raising=False)
    assert Settings(_env_file=None).database_url == DEFAULT_DATABASE_URL  # type: ignore[call-arg]


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOTS_DATABASE_URL", "memory://")
    monkeypatch.setenv("CHATBOTS_ACCESS_TOKEN_TTL_SECONDS", "60")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.uses_memory
    assert settings.access_token_ttl_seconds == 60


def test_production_refuses_the_development_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOTS_ENV", "production")
    monkeypatch.delenv("CHATBOTS_JWT_SECRET", raising=False)
    with pytest.raises(ValidationError, match="CHATBOTS_JWT_SECRET"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_production_starts_with_a_real_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOTS_ENV", "production")
    monkeypatch.setenv("CHATBOTS_JWT_SECRET", "x" * 40)
    assert Settings(_env_file=None).env == "production"  # type: ignore[call-arg]


def test_the_secret_never_shows_in_repr() -> None:
    settings = Settings(_env_file=None, jwt_secret="super-secret-value-1234567890abcdef")  # type: ignore[call-arg]
    assert "super-secret-value" not in repr(settings)

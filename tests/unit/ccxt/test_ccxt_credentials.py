from __future__ import annotations

from pathlib import Path

import pytest

from wavesquant.execution.venues.credentials import (
    ExchangeCredentials,
    MissingCredentialError,
    env_prefix,
    key_id,
)

KEY = "AKIAREALLOOKINGKEY123"
SECRET = "s3cr3t-value-that-must-not-leak"


def test_from_env_values_and_no_secret_in_repr() -> None:
    creds = ExchangeCredentials.from_env("binance", {"WQ_BINANCE_API_KEY": KEY, "WQ_BINANCE_SECRET": SECRET})
    assert creds.api_key.get_secret_value() == KEY
    assert creds.secret.get_secret_value() == SECRET
    assert creds.password is None
    for text in (repr(creds), str(creds), creds.model_dump_json()):
        assert KEY not in text and SECRET not in text
    assert creds.ccxt_config() == {"apiKey": KEY, "secret": SECRET}


def test_from_secret_files(tmp_path: Path) -> None:
    (tmp_path / "key").write_text(KEY + "\n")
    (tmp_path / "secret").write_text(SECRET)
    (tmp_path / "pw").write_text("pass")
    env = {
        "WQ_COINBASE_PRO_API_KEY_FILE": str(tmp_path / "key"),
        "WQ_COINBASE_PRO_SECRET_FILE": str(tmp_path / "secret"),
        "WQ_COINBASE_PRO_PASSWORD_FILE": str(tmp_path / "pw"),
    }
    creds = ExchangeCredentials.from_env("coinbase-pro", env, require_password=True)
    assert env_prefix("coinbase-pro") == "WQ_COINBASE_PRO"
    assert creds.ccxt_config() == {"apiKey": KEY, "secret": SECRET, "password": "pass"}


def test_missing_variable_is_named() -> None:
    with pytest.raises(MissingCredentialError, match=r"WQ_KRAKEN_SECRET or WQ_KRAKEN_SECRET_FILE"):
        ExchangeCredentials.from_env("kraken", {"WQ_KRAKEN_API_KEY": KEY})
    with pytest.raises(MissingCredentialError, match="WQ_KRAKEN_PASSWORD"):
        ExchangeCredentials.from_env(
            "kraken", {"WQ_KRAKEN_API_KEY": KEY, "WQ_KRAKEN_SECRET": SECRET}, require_password=True
        )


def test_secret_file_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(MissingCredentialError, match="WQ_BINANCE_API_KEY_FILE"):
        ExchangeCredentials.from_env("binance", {"WQ_BINANCE_API_KEY_FILE": str(tmp_path / "nope")})
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(MissingCredentialError, match="empty"):
        ExchangeCredentials.from_env("binance", {"WQ_BINANCE_API_KEY_FILE": str(tmp_path / "empty")})


def test_key_id_is_a_stable_hash_not_the_key() -> None:
    creds = ExchangeCredentials.from_env("binance", {"WQ_BINANCE_API_KEY": KEY, "WQ_BINANCE_SECRET": SECRET})
    assert creds.key_id == key_id(KEY) and len(creds.key_id) == 16
    assert KEY not in creds.key_id
    assert key_id("other") != creds.key_id
    assert key_id(None) == "public"

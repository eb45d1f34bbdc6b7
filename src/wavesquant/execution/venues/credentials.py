"""Exchange API credentials, read from environment variables or docker-style secret files.

For exchange ``binance`` the variables are ``WQ_BINANCE_API_KEY``, ``WQ_BINANCE_SECRET`` and (only for
exchanges that need one) ``WQ_BINANCE_PASSWORD``. Each may instead name a file holding the value:
``WQ_BINANCE_API_KEY_FILE=/run/secrets/binance_api_key``. A direct value wins over a file. Secrets are
``SecretStr``: ``repr``/``str`` of the model never show them.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr


class MissingCredentialError(ValueError):
    """A required credential variable is not set (message names the variable; a ValueError, so the CLI shows
    it as one line)."""


def env_prefix(exchange: str) -> str:
    """``binance`` -> ``WQ_BINANCE``; ``coinbase-pro`` -> ``WQ_COINBASE_PRO``."""
    return "WQ_" + re.sub(r"[^A-Z0-9]", "_", exchange.upper())


def key_id(api_key: str | None) -> str:
    """A stable, non-reversible id of an api key (for rate-limit buckets and logs), never the key itself."""
    if not api_key:
        return "public"
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


class ExchangeCredentials(BaseModel):
    model_config = ConfigDict(frozen=True)

    exchange: str
    api_key: SecretStr
    secret: SecretStr
    password: SecretStr | None = None

    @property
    def key_id(self) -> str:
        return key_id(self.api_key.get_secret_value())

    def ccxt_config(self) -> dict[str, str]:
        """The plain-text config ccxt needs (apiKey, secret, password). Never log the result."""
        config = {"apiKey": self.api_key.get_secret_value(), "secret": self.secret.get_secret_value()}
        if self.password is not None:
            config["password"] = self.password.get_secret_value()
        return config

    @classmethod
    def from_env(
        cls,
        exchange: str,
        env: Mapping[str, str] | None = None,
        *,
        require_password: bool = False,
    ) -> ExchangeCredentials:
        """Load credentials for `exchange`; raises MissingCredentialError naming the missing variable."""
        source = os.environ if env is None else env
        prefix = env_prefix(exchange)
        api_key = _read(source, f"{prefix}_API_KEY", required=True)
        secret = _read(source, f"{prefix}_SECRET", required=True)
        password = _read(source, f"{prefix}_PASSWORD", required=require_password)
        return cls(
            exchange=exchange,
            api_key=SecretStr(api_key or ""),
            secret=SecretStr(secret or ""),
            password=SecretStr(password) if password is not None else None,
        )


def _read(env: Mapping[str, str], name: str, *, required: bool) -> str | None:
    value = env.get(name)
    if value:
        return value.strip()
    file_name = env.get(f"{name}_FILE")
    if file_name:
        path = Path(file_name)
        if not path.is_file():
            raise MissingCredentialError(f"{name}_FILE points to {path}, which is not a readable file")
        content = path.read_text().strip()
        if content:
            return content
        raise MissingCredentialError(f"{name}_FILE points to {path}, which is empty")
    if required:
        raise MissingCredentialError(f"missing credential: set {name} or {name}_FILE")
    return None

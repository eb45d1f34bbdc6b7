"""The envelope every message shares."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wavesquant.core.ids import new_msg_id
from wavesquant.messages.fields import EpochMs, EpochNs, Identifier, Name

SCHEMA_VERSION = 1


class Envelope(BaseModel):
    """Common fields: `type` discriminator, unique time-ordered `msg_id`, `source` agent, creation time in ms and ns
    since the epoch (from the sender's clock), optional `expires_at_ms`, `schema_version`.

    Messages are immutable. An expiry must lie after the creation time; an expired message is never acted on."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False)

    type: str
    msg_id: Identifier = Field(default_factory=new_msg_id)
    source: Name
    ts_ms: EpochMs
    ts_ns: EpochNs
    expires_at_ms: EpochMs | None = None
    schema_version: int = Field(default=SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION)

    @model_validator(mode="after")
    def _expiry_after_creation(self) -> Self:
        if self.expires_at_ms is not None and self.expires_at_ms <= self.ts_ms:
            raise ValueError(f"expires_at_ms {self.expires_at_ms} is not after ts_ms {self.ts_ms}")
        return self

    @classmethod
    def type_name(cls) -> str:
        return str(cls.model_fields["type"].default)

    def is_expired(self, now_ms: int) -> bool:
        return self.expires_at_ms is not None and now_ms >= self.expires_at_ms

    @classmethod
    def create(cls, *, source: str, ts_ns: int, **fields: Any) -> Self:
        """Build and validate a message stamped with the sender's clock reading `ts_ns`."""
        return cls(source=source, ts_ns=ts_ns, ts_ms=ts_ns // 1_000_000, **fields)

"""System messages: heartbeats, control, risk alerts, learning updates and lifecycle events."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wavesquant.messages.envelope import Envelope
from wavesquant.messages.fields import (
    MAX_LIST,
    EpochMs,
    FiniteFloat,
    Identifier,
    Name,
    ShortText,
    Symbol,
    Text,
)
from wavesquant.types import SignalState

AgentStatus = Literal["starting", "running", "paused", "stopped", "degraded"]


class LoopStats(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Name
    tier: Name
    interval_s: float = Field(gt=0)
    runs: int = Field(ge=0)
    failures: int = Field(ge=0)
    consecutive_failures: int = Field(ge=0)
    overruns: int = Field(ge=0)
    last_ms: float = Field(ge=0)
    mean_ms: float = Field(ge=0)
    max_ms: float = Field(ge=0)


class Heartbeat(Envelope):
    type: Literal["heartbeat"] = "heartbeat"
    agent: Name
    status: AgentStatus
    pid: int = Field(ge=0)
    host: ShortText
    uptime_s: float = Field(ge=0)
    loops: tuple[LoopStats, ...] = Field(default_factory=tuple, max_length=MAX_LIST)
    queue_depths: dict[Name, int] = Field(default_factory=dict, max_length=MAX_LIST)
    counters: dict[ShortText, int] = Field(default_factory=dict, max_length=256)
    bus_connected: bool = True
    problems: tuple[ShortText, ...] = Field(default_factory=tuple, max_length=MAX_LIST)


ControlVerb = Literal["start", "stop", "pause", "resume", "kill", "resume_trading"]


class ControlCommand(Envelope):
    """An operator command for one agent (`target`) or all (`*`)."""

    type: Literal["control_command"] = "control_command"
    target: str = Field(pattern=r"^(\*|[a-z][a-z0-9_]{0,63})$")
    command: ControlVerb
    request_id: Identifier
    args: dict[Name, ShortText] = Field(default_factory=dict, max_length=16)


class ControlAck(Envelope):
    type: Literal["control_ack"] = "control_ack"
    request_id: Identifier
    agent: Name
    command: ControlVerb
    ok: bool
    status: AgentStatus
    detail: ShortText = ""


class RiskAlert(Envelope):
    type: Literal["risk_alert"] = "risk_alert"
    level: Literal["info", "warning", "critical"]
    code: Name
    message: Text
    trading_state: Name
    symbols: tuple[Symbol, ...] = Field(default_factory=tuple, max_length=MAX_LIST)


class LearningUpdate(Envelope):
    """Outcome feedback for a strategy (performance metrics per strategy instance)."""

    type: Literal["learning_update"] = "learning_update"
    strategy_id: Name
    metrics: dict[Name, FiniteFloat] = Field(default_factory=dict, max_length=64)
    signal_id: Identifier | None = None
    note: ShortText = ""


MAX_SIGNAL_STEPS = 256


class SignalStep(BaseModel):
    """One signal lifecycle transition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    signal_id: Identifier
    signal_type: Name
    strategy_id: Name | None = None
    symbol: Symbol | None = None
    from_state: SignalState | None
    to_state: SignalState
    ts_ms: EpochMs
    reason: ShortText = ""
    signal_expires_at_ms: int | None = Field(default=None, ge=0)


_STEP_ONLY_FIELDS = SignalStep.model_fields.keys() - Envelope.model_fields.keys()


class SignalEvent(Envelope):
    """Signal lifecycle transitions core recorded together (one entry per batch it handled), in the order they
    happened; the event log of these rebuilds every signal's state after a restart.

    An entry written before transitions were grouped (one transition's fields at the top level, its time the
    entry's `ts_ms`) is read as a one-step entry."""

    type: Literal["signal_event"] = "signal_event"
    steps: list[SignalStep] = Field(min_length=1, max_length=MAX_SIGNAL_STEPS)

    @model_validator(mode="before")
    @classmethod
    def _one_step_form(cls, data: Any) -> Any:
        if isinstance(data, dict) and "steps" not in data and "signal_id" in data:
            data = dict(data)
            step = {k: data.pop(k) for k in list(data) if k in _STEP_ONLY_FIELDS}
            step["ts_ms"] = data.get("ts_ms")
            data["steps"] = [step]
        return data

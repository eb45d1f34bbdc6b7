"""Typed, frozen configuration: YAML files in config/ validated by pydantic-settings, `WQ_...` env overrides
(nested keys with `__`, e.g. `WQ_BUS__BACKEND=redis`). Invalid input gives one line per problem naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, SettingsError

from wavesquant.core.tiers import Tier
from wavesquant.risk.limits import BreakerLimits, RiskLimits

AGENT_NAMES = (
    "data_feeds",
    "market_conditions",
    "intelligence",
    "strategy_engine",
    "risk",
    "execution",
    "core",
)

# Every loop of every agent with its tier and default interval (seconds). DESIGN.md is the source.
LOOPS: dict[str, dict[str, tuple[Tier, float]]] = {
    "data_feeds": {
        "hft_data_feeds": (Tier.HFT, 0.010),
        "fast_strategy_feeds": (Tier.FAST, 0.100),
        "tactical_intelligence_feeds": (Tier.TACTICAL, 1.0),
        "strategic_macro_feeds": (Tier.STRATEGIC, 60.0),
    },
    "market_conditions": {
        "market_anomaly_scanner": (Tier.TACTICAL, 1.0),
        "supply_demand_imbalance_detector": (Tier.TACTICAL, 5.0),
        "regime_change_predictor": (Tier.TACTICAL, 30.0),
        "strange_behavior_analyzer": (Tier.STRATEGIC, 60.0),
    },
    "intelligence": {
        "arbitrage_intelligence": (Tier.HFT, 0.010),
        "statistical_intelligence": (Tier.FAST, 1.0),
        "trend_intelligence": (Tier.TACTICAL, 5.0),
        "macro_intelligence": (Tier.STRATEGIC, 60.0),
    },
    "strategy_engine": {
        "strategy_application": (Tier.FAST, 0.100),
        "strategy_optimization": (Tier.TACTICAL, 10.0),
        "performance_monitoring": (Tier.TACTICAL, 30.0),
        "composition_trigger_monitor": (Tier.STRATEGIC, 300.0),
    },
    "risk": {
        "ultra_fast_protection": (Tier.HFT, 0.010),
        "pre_trade_validation": (Tier.FAST, 0.100),
        "portfolio_monitoring": (Tier.TACTICAL, 1.0),
    },
    "execution": {
        "hft_execution": (Tier.HFT, 0.010),
        "fast_execution": (Tier.FAST, 0.100),
        "strategic_execution": (Tier.TACTICAL, 10.0),
    },
    "core": {
        "signal_routing": (Tier.FAST, 0.100),
        "agent_health_monitoring": (Tier.TACTICAL, 30.0),
        "learning_coordination": (Tier.STRATEGIC, 300.0),
    },
}


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BusSettings(Frozen):
    backend: Literal["embedded", "redis"] = "embedded"
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = Field(default="wq:", pattern=r"^[A-Za-z0-9_\-:.]{0,40}$")
    stream_maxlen: int = Field(default=100_000, ge=100)
    event_log_maxlen: int = Field(default=1_000_000, ge=1000)
    off_path_batch_ms: float = Field(
        default=5.0, ge=0, le=100,
        description="consumers off the latency path read at most once per this window (Redis only; 0: at once)")


class LoggingSettings(Frozen):
    level: Literal["debug", "info", "warning", "error"] = "info"
    json_output: bool = False


def _loops_model(agent: str) -> type[BaseModel]:
    """`<agent>.loops`: one optional interval (seconds) per loop of the agent, bounded by the loop's tier, so
    every bad or unknown loop is reported under its own key."""
    fields: dict[str, Any] = {
        name: (float | None, Field(default=None, ge=tier.interval_range_s[0], le=tier.interval_range_s[1],
                                   description=f"{tier.value} tier, default {default}s"))
        for name, (tier, default) in LOOPS[agent].items()
    }
    return create_model(f"{agent.title().replace('_', '')}Loops", __config__=ConfigDict(frozen=True, extra="forbid"),
                        **fields)


LOOP_MODELS: dict[str, type[BaseModel]] = {agent: _loops_model(agent) for agent in LOOPS}
DataFeedsLoops = LOOP_MODELS["data_feeds"]
MarketConditionsLoops = LOOP_MODELS["market_conditions"]
IntelligenceLoops = LOOP_MODELS["intelligence"]
StrategyEngineLoops = LOOP_MODELS["strategy_engine"]
RiskLoops = LOOP_MODELS["risk"]
ExecutionLoops = LOOP_MODELS["execution"]
CoreLoops = LOOP_MODELS["core"]


class AgentSettings(Frozen):
    """Per-agent settings; `loops` overrides loop intervals (seconds) within each loop's tier."""


class ReplayFile(Frozen):
    path: Path
    exchange: str | None = None  # default: from the file name (binance_BTCUSDT_1m.csv)
    symbol: str | None = None
    timeframe: str | None = None


class ReplaySettings(Frozen):
    files: list[ReplayFile] = Field(default_factory=list)
    bars_per_second: float = Field(default=20.0, gt=0, le=100_000)
    ticks_per_second: float = Field(default=1000.0, gt=0, le=1_000_000)
    loop: bool = False


class SyntheticSettings(Frozen):
    exchange: str = "synthetic"
    symbols: list[str] = Field(default_factory=lambda: ["BTC/USDT", "ETH/USDT", "SOL/USDT"])
    start_prices: list[float] = Field(default_factory=lambda: [60_000.0, 3_000.0, 150.0])
    seed: int = 7
    vol_per_tick: float = Field(default=0.0008, gt=0, lt=0.1)
    correlation: float = Field(default=0.6, ge=-0.99, le=0.99)
    ticks_per_second: float = Field(default=20.0, gt=0, le=100_000)
    bar_timeframe: str = "1s"

    @model_validator(mode="after")
    def _prices_match(self) -> SyntheticSettings:
        if len(self.start_prices) != len(self.symbols):
            raise ValueError(f"{len(self.symbols)} symbols but {len(self.start_prices)} start_prices")
        return self


class DataFeedSettings(AgentSettings):
    loops: DataFeedsLoops = Field(default_factory=DataFeedsLoops)  # type: ignore[valid-type]
    source: Literal["synthetic", "replay"] = "synthetic"
    synthetic: SyntheticSettings = Field(default_factory=SyntheticSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)


class MarketConditionSettings(AgentSettings):
    loops: MarketConditionsLoops = Field(default_factory=MarketConditionsLoops)  # type: ignore[valid-type]
    jump_window: int = Field(default=60, ge=5)
    jump_z: float = Field(default=5.0, gt=0)
    volume_window: int = Field(default=60, ge=5)
    volume_multiple: float = Field(default=5.0, gt=1)


class IntelligenceSettings(AgentSettings):
    loops: IntelligenceLoops = Field(default_factory=IntelligenceLoops)  # type: ignore[valid-type]
    trend_fast: int = Field(default=10, ge=2)
    trend_slow: int = Field(default=30, ge=3)
    history: int = Field(default=500, ge=10)


class StrategyInstance(Frozen):
    id: str = Field(pattern=r"^[a-z][a-z0-9_\-]{0,63}$")
    kind: str
    exchange: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class StrategyEngineSettings(AgentSettings):
    loops: StrategyEngineLoops = Field(default_factory=StrategyEngineLoops)  # type: ignore[valid-type]
    strategies: list[StrategyInstance] = Field(
        default_factory=lambda: [
            StrategyInstance(id="trend_btc", kind="ma_crossover",
                             params={"symbols": ["BTC/USDT"], "fast": 5, "slow": 20, "quantity": 0.01}),
            StrategyInstance(id="trend_eth", kind="ma_crossover",
                             params={"symbols": ["ETH/USDT"], "fast": 5, "slow": 20, "quantity": 0.2}),
        ]
    )
    signal_ttl_s: float = Field(default=5.0, gt=0)

    @field_validator("strategies")
    @classmethod
    def _unique_ids(cls, v: list[StrategyInstance]) -> list[StrategyInstance]:
        ids = [s.id for s in v]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"duplicate strategy ids: {sorted(dupes)}")
        return v


class RiskSettings(AgentSettings):
    loops: RiskLoops = Field(default_factory=RiskLoops)  # type: ignore[valid-type]
    limits: RiskLimits = Field(default_factory=RiskLimits)
    breakers: BreakerLimits = Field(default_factory=BreakerLimits)
    starting_equity: float = Field(default=100_000.0, gt=0)


class PaperVenueSettings(Frozen):
    maker_fee: float = Field(default=0.0002, ge=-0.01, le=0.01)
    taker_fee: float = Field(default=0.0005, ge=0, le=0.01)
    latency_ms: int = Field(default=0, ge=0, le=10_000)
    balances: dict[str, float] = Field(default_factory=lambda: {"USDT": 100_000.0})
    persist: bool = Field(default=True, description="keep paper orders and fills in Redis (redis bus only)")
    history: int = Field(default=100_000, ge=100, le=10_000_000,
                         description="closed orders and fills the paper venue remembers, like an exchange's history")
    markets_file: Path | None = Field(default=None, description="ccxt markets JSON (symbol -> market): tick, lot, "
                                                                "min size and notional rules per symbol")


class CcxtVenueSettings(Frozen):
    exchange_id: str = "binance"
    sandbox: bool = True
    live: bool = False  # real money: needs --live and a confirmation on the command line as well
    api_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+$",
                                description="sandbox only: send REST calls to this host (tests, proxies)")
    market_type: Literal["spot", "swap", "future"] = "spot"
    symbols: list[str] = Field(default_factory=list)
    websocket: bool = True
    timeout_ms: int = Field(default=10_000, ge=100, le=120_000)
    rate_limit_per_s: float | None = Field(default=None, gt=0, description="default: the exchange's documented pace")


class ExecutionSettings(AgentSettings):
    loops: ExecutionLoops = Field(default_factory=ExecutionLoops)  # type: ignore[valid-type]
    venue: Literal["paper", "ccxt"] = "paper"
    paper: PaperVenueSettings = Field(default_factory=PaperVenueSettings)
    ccxt: CcxtVenueSettings = Field(default_factory=CcxtVenueSettings)
    creation_timeout_s: float = Field(default=10.0, gt=0)
    cancel_timeout_s: float = Field(default=10.0, gt=0)
    reclaim_idle_ms: int = Field(default=5_000, ge=100)


class JournalSettings(Frozen):
    """The trade journal: execution keeps an SQLite file in step with the event log (orders, fills, PnL)."""

    enabled: bool = False
    path: Path = Path("var/journal.sqlite")


class CoreSettings(AgentSettings):
    loops: CoreLoops = Field(default_factory=CoreLoops)  # type: ignore[valid-type]
    silence_timeout_s: float = Field(default=5.0, gt=0)
    signal_history: int = Field(default=100_000, ge=100)


class HeartbeatSettings(Frozen):
    interval_s: float = Field(default=1.0, gt=0, le=60)
    ttl_s: int = Field(default=10, ge=2)


class GcSettings(Frozen):
    """The garbage collector of agent processes (`wq run`, `wq agent run`; see wavesquant.gc_policy)."""

    freeze_interval_s: float = Field(
        default=10.0, ge=0, le=3600,
        description="this often, what survived a young collection is frozen; 0: Python's own policy throughout")
    full_collection_interval_s: float = Field(
        default=0.0, ge=0,
        description="a full collection, frozen objects included, this often; 0 (default): never, since each one "
                    "stops the process for 0.1-1 s and none measured found anything to free")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WQ_", env_nested_delimiter="__", extra="forbid", frozen=True)

    bus: BusSettings = Field(default_factory=BusSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    heartbeat: HeartbeatSettings = Field(default_factory=HeartbeatSettings)
    data_feeds: DataFeedSettings = Field(default_factory=DataFeedSettings)
    market_conditions: MarketConditionSettings = Field(default_factory=MarketConditionSettings)
    intelligence: IntelligenceSettings = Field(default_factory=IntelligenceSettings)
    strategy_engine: StrategyEngineSettings = Field(default_factory=StrategyEngineSettings)
    risk: RiskSettings = Field(default_factory=RiskSettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    journal: JournalSettings = Field(default_factory=JournalSettings)
    core: CoreSettings = Field(default_factory=CoreSettings)
    gc: GcSettings = Field(default_factory=GcSettings)

    def loop_interval(self, agent: str, loop: str) -> float:
        configured: float | None = getattr(getattr(self, agent).loops, loop)
        return configured if configured is not None else LOOPS[agent][loop][1]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # env overrides the YAML file (passed as init kwargs)
        return (env_settings, init_settings, file_secret_settings)


class ConfigError(Exception):
    """A user-facing configuration problem; str() is one line per problem."""


DEFAULT_CONFIG = Path("config/default.yaml")


def load_settings(path: Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Load YAML (default config/default.yaml when present), apply env `WQ_...` and explicit overrides."""
    data: dict[str, Any] = {}
    file = path if path is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    if file is not None:
        if not file.is_file():
            raise ConfigError(f"config file {file} not found: pass an existing file with --config")
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{file}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: top level must be a mapping of sections (bus:, risk:, ...)")
        data = loaded
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, file)) from None
    except SettingsError as exc:  # an environment variable pydantic-settings cannot parse
        raise ConfigError(f"environment: {exc} (WQ_<SECTION>__<KEY>=value sets one key, e.g. WQ_BUS__BACKEND=redis)") from None


def format_validation_error(exc: ValidationError, file: Path | None = None) -> str:
    origin = f"{file}: " if file else ""
    lines = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) or "<root>"
        msg = err["msg"]
        if len(loc) == 3 and loc[1] == "loops" and loc[0] in LOOPS:
            if err["type"] == "extra_forbidden":
                msg = f"unknown loop (known: {', '.join(LOOPS[loc[0]])})"
            elif err["type"] in ("less_than_equal", "greater_than_equal"):
                tier = LOOPS[loc[0]][loc[2]][0]
                lo, hi = tier.interval_range_s
                msg = f"{err['input']}s outside the {tier.value} tier ({lo:g}-{hi:g}s)"
        value = f" (got {err['input']!r})" if not isinstance(err.get("input"), dict | list) else ""
        lines.append(f"{origin}{key}: {msg}{value}")
    return "\n".join(lines)

"""market_conditions: wide anomaly detection on every symbol's bars, published as `market_anomaly` early
warnings (price jumps, volume spikes, supply/demand imbalance, volatility regime shifts, stuck feeds)."""

from __future__ import annotations

from collections import deque

import numpy as np

from wavesquant.agents.base import Agent
from wavesquant.analytics.anomalies import AnomalyFinding, PriceJumpDetector, VolumeSpikeDetector
from wavesquant.analytics.regimes import stuck_price, volatility_ratio, volume_imbalance
from wavesquant.bus.base import Bus
from wavesquant.config import Settings
from wavesquant.core.clock import Clock
from wavesquant.messages import Bar, Channel, Envelope, MarketAnomaly

HISTORY = 240
IMBALANCE_BARS = 30
IMBALANCE_THRESHOLD = 0.8
REGIME_SHORT, REGIME_LONG, REGIME_RATIO = 10, 120, 2.5
STUCK_BARS = 20
REPEAT_SUPPRESS_MS = 30_000  # one warning per symbol and kind per 30 s


class _SymbolWindow:
    def __init__(self, symbol: str, cfg: Settings) -> None:
        mc = cfg.market_conditions
        self.jump = PriceJumpDetector(symbol, window=mc.jump_window, z_threshold=mc.jump_z)
        self.volume = VolumeSpikeDetector(symbol, window=mc.volume_window, multiple=mc.volume_multiple)
        self.opens: deque[float] = deque(maxlen=HISTORY)
        self.closes: deque[float] = deque(maxlen=HISTORY)
        self.volumes: deque[float] = deque(maxlen=HISTORY)

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.fromiter(self.opens, float), np.fromiter(self.closes, float), np.fromiter(self.volumes, float)


class MarketConditionsAgent(Agent):
    name = "market_conditions"

    def __init__(self, settings: Settings, bus: Bus, clock: Clock, consumer_id: str | None = None) -> None:
        super().__init__(settings, bus, clock, consumer_id)
        self.windows: dict[str, _SymbolWindow] = {}
        self.findings: list[tuple[AnomalyFinding, float]] = []  # (finding, time_to_impact_s) awaiting the scanner
        self._last_warned: dict[tuple[str, str], int] = {}
        self.on([Channel.MARKET_BARS], self.on_bars)
        self.loop("market_anomaly_scanner", self.publish_anomalies)
        self.loop("supply_demand_imbalance_detector", self.detect_imbalance)
        self.loop("regime_change_predictor", self.detect_regime_change)
        self.loop("strange_behavior_analyzer", self.detect_strange_behavior)

    async def on_bars(self, batch: list[Envelope]) -> None:
        for bar in batch:
            if not isinstance(bar, Bar):
                continue
            w = self.windows.get(bar.symbol)
            if w is None:
                w = self.windows[bar.symbol] = _SymbolWindow(bar.symbol, self.settings)
            w.opens.append(bar.open)
            w.closes.append(bar.close)
            w.volumes.append(bar.volume)
            for finding in (w.jump.update(bar.open_ts_ms, bar.close), w.volume.update(bar.open_ts_ms, bar.volume)):
                if finding is not None:
                    self.findings.append((finding, 0.0))

    def _finding(self, kind: str, symbol: str, severity: str, magnitude: float, actions: tuple[str, ...],
                 impact_s: float) -> None:
        f = AnomalyFinding(kind, symbol, severity, 0.7, magnitude, self.clock.now_ms(), actions,  # type: ignore[arg-type]
                           magnitude, 0.0)
        self.findings.append((f, impact_s))

    async def publish_anomalies(self) -> None:
        now = self.clock.now_ms()
        msgs: list[Envelope] = []
        for f, impact_s in self.findings:
            key = (f.symbol, f.anomaly_type)
            if now - self._last_warned.get(key, -REPEAT_SUPPRESS_MS) < REPEAT_SUPPRESS_MS and f.severity != "critical":
                self.counters["anomalies_suppressed"] += 1
                continue
            self._last_warned[key] = now
            msgs.append(self.message(
                MarketAnomaly, severity=f.severity, anomaly_type=f.anomaly_type, affected_assets=[f.symbol],
                confidence=f.confidence, time_to_impact=impact_s, recommended_actions=list(f.recommended_actions),
                magnitude=f.magnitude,
            ))
            self.counters[f"anomalies:{f.anomaly_type}"] += 1
        self.findings = []
        if msgs:
            await self.bus.publish_many(msgs)

    async def detect_imbalance(self) -> None:
        for symbol, w in self.windows.items():
            if len(w.closes) < IMBALANCE_BARS:
                continue
            o, c, v = (x[-IMBALANCE_BARS:] for x in w.arrays())
            imb = volume_imbalance(o, c, v)
            if abs(imb) >= IMBALANCE_THRESHOLD:
                self._finding("supply_demand_imbalance", symbol, "medium" if abs(imb) < 0.95 else "high",
                              imb, ("monitor",), 60.0)

    async def detect_regime_change(self) -> None:
        for symbol, w in self.windows.items():
            ratio = volatility_ratio(np.fromiter(w.closes, float), REGIME_SHORT, REGIME_LONG)
            if ratio is not None and ratio >= REGIME_RATIO:
                severity = "high" if ratio >= 2 * REGIME_RATIO else "medium"
                self._finding("volatility_regime_shift", symbol, severity, ratio, ("reduce_exposure",), 300.0)

    async def detect_strange_behavior(self) -> None:
        for symbol, w in self.windows.items():
            _, c, v = w.arrays()
            if stuck_price(c, v, STUCK_BARS):
                self._finding("stuck_price", symbol, "medium", float(STUCK_BARS), ("check_feed",), 0.0)

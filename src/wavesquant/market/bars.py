"""OHLCV bars: the `Bar` value type, the numpy bar dtype, timeframe parsing and a tick-to-bar aggregator."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

BAR_DTYPE = np.dtype(
    [
        ("ts_ms", np.int64),  # bar OPEN time, UTC epoch ms
        ("open", np.float64),
        ("high", np.float64),
        ("low", np.float64),
        ("close", np.float64),
        ("volume", np.float64),
    ]
)

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_TIMEFRAME_RE = re.compile(r"^([1-9][0-9]*)([smhdw])$")


def timeframe_to_ms(timeframe: str) -> int:
    """`"1m"` -> 60000. Units: s, m, h, d, w (months are not fixed-length and are rejected)."""
    match = _TIMEFRAME_RE.match(timeframe)
    if match is None:
        raise ValueError(f"unknown timeframe {timeframe!r}: expected <n><s|m|h|d|w>, e.g. '1m', '4h'")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def ms_to_timeframe(timeframe_ms: int) -> str:
    """60000 -> `"1m"`: the largest unit that divides `timeframe_ms` exactly."""
    if timeframe_ms <= 0 or timeframe_ms % 1_000:
        raise ValueError(f"timeframe must be a positive whole number of seconds, got {timeframe_ms} ms")
    for unit in ("w", "d", "h", "m", "s"):
        if timeframe_ms % _UNIT_MS[unit] == 0:
            return f"{timeframe_ms // _UNIT_MS[unit]}{unit}"
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class Bar:
    symbol: str
    timeframe: str
    open_ts_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    @property
    def close_ts_ms(self) -> int:
        """End of the bar's interval (the time its close became known)."""
        return self.open_ts_ms + timeframe_to_ms(self.timeframe)


def bars_from_array(arr: np.ndarray, symbol: str, timeframe: str) -> list[Bar]:
    """`Bar` objects from a BAR_DTYPE array (for replay and tests)."""
    return [
        Bar(symbol, timeframe, int(ts), float(o), float(h), float(lo), float(c), float(v))
        for ts, o, h, lo, c, v in zip(
            arr["ts_ms"].tolist(),
            arr["open"].tolist(),
            arr["high"].tolist(),
            arr["low"].tolist(),
            arr["close"].tolist(),
            arr["volume"].tolist(),
            strict=True,
        )
    ]


class _OpenBar:
    __slots__ = ("close", "high", "low", "open", "open_ts_ms", "volume")

    def __init__(self, open_ts_ms: int, price: float, size: float) -> None:
        self.open_ts_ms = open_ts_ms
        self.open = self.high = self.low = self.close = price
        self.volume = size


class BarAggregator:
    """Builds time bars from ticks, per symbol.

    Bars are aligned to multiples of the timeframe since the epoch. A bar closes when a tick of a later bucket
    arrives for its symbol, or when `close_due(ts_ms)` is called at or after its end (timer-driven close for
    quiet markets). Buckets without ticks produce no bar (gaps stay gaps). A tick older than the symbol's
    current bar is dropped and counted in `late_ticks`; it cannot amend a bar that was already emitted. A tick
    with a non-finite or non-positive price or a non-finite or negative size is dropped and counted in
    `bad_ticks`.
    """

    def __init__(self, timeframe: str | int) -> None:
        if isinstance(timeframe, str):
            self.timeframe_ms = timeframe_to_ms(timeframe)
            self.timeframe = timeframe
        else:
            self.timeframe = ms_to_timeframe(timeframe)
            self.timeframe_ms = timeframe
        self._open: dict[str, _OpenBar] = {}
        self._last_closed_ts: dict[str, int] = {}
        self.late_ticks = 0
        self.bad_ticks = 0

    def update(self, symbol: str, ts_ms: int, price: float, size: float) -> list[Bar]:
        """Add one tick; returns the bars it closed (zero or one)."""
        if not (math.isfinite(price) and price > 0 and math.isfinite(size) and size >= 0):
            self.bad_ticks += 1
            return []
        bucket = ts_ms - ts_ms % self.timeframe_ms
        current = self._open.get(symbol)
        if current is None:
            if bucket <= self._last_closed_ts.get(symbol, -1):
                self.late_ticks += 1
                return []
            self._open[symbol] = _OpenBar(bucket, price, size)
            return []
        if bucket == current.open_ts_ms:
            current.high = max(current.high, price)
            current.low = min(current.low, price)
            current.close = price
            current.volume += size
            return []
        if bucket < current.open_ts_ms:
            self.late_ticks += 1
            return []
        closed = self._close(symbol, current)
        self._open[symbol] = _OpenBar(bucket, price, size)
        return [closed]

    def update_batch(self, symbol: str, ts_ms: np.ndarray, price: np.ndarray, size: np.ndarray) -> list[Bar]:
        """Feed a batch of ticks of one symbol in order; returns every bar closed by it."""
        closed: list[Bar] = []
        for ts, p, s in zip(ts_ms.tolist(), price.tolist(), size.tolist(), strict=True):
            closed.extend(self.update(symbol, int(ts), float(p), float(s)))
        return closed

    def close_due(self, ts_ms: int) -> list[Bar]:
        """Close every open bar whose interval ended at or before `ts_ms`."""
        due = [s for s, b in self._open.items() if b.open_ts_ms + self.timeframe_ms <= ts_ms]
        return [self._close(s, self._open.pop(s)) for s in due]

    def flush(self) -> list[Bar]:
        """Close every open bar now (end of a replay)."""
        bars = [self._close(s, b) for s, b in self._open.items()]
        self._open.clear()
        return bars

    def _close(self, symbol: str, b: _OpenBar) -> Bar:
        self._last_closed_ts[symbol] = b.open_ts_ms
        return Bar(symbol, self.timeframe, b.open_ts_ms, b.open, b.high, b.low, b.close, b.volume)

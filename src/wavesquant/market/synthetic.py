"""A seeded synthetic market: correlated geometric random walks with occasional jumps.

Per step every symbol's log price moves by `vol_per_step * z` where z ~ N(0, C) and C is the
constant-correlation matrix (1 on the diagonal, `correlation` elsewhere), drawn as L @ e with L the Cholesky
factor of C and e i.i.d. standard normal. Independently per symbol, with probability `jump_probability` a
jump of log size `±jump_size` (sign random) is added, so anomaly detectors have something to find. Trade
sizes are exponential with mean `mean_size`. Same seed, same calls -> same numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from wavesquant.market.bars import BAR_DTYPE


class SyntheticMarket:
    def __init__(
        self,
        symbols: Sequence[str],
        start_prices: Mapping[str, float] | Sequence[float],
        seed: int,
        vol_per_step: float = 1e-4,
        correlation: float = 0.3,
        jump_probability: float = 0.0,
        jump_size: float = 0.02,
        spread_bps: float = 2.0,
        mean_size: float = 1.0,
    ) -> None:
        self.symbols = list(symbols)
        k = len(self.symbols)
        if k == 0:
            raise ValueError("SyntheticMarket needs at least one symbol")
        if isinstance(start_prices, Mapping):
            missing = [s for s in self.symbols if s not in start_prices]
            if missing:
                raise ValueError(f"no start price for {missing}")
            start = np.array([start_prices[s] for s in self.symbols], dtype=np.float64)
        else:
            start = np.asarray(start_prices, dtype=np.float64)
            if start.shape != (k,):
                raise ValueError(f"expected {k} start prices, got {start.shape}")
        if not (np.isfinite(start).all() and (start > 0).all()):
            raise ValueError("start prices must be finite and positive")
        if k > 1 and not (-1.0 / (k - 1) < correlation < 1.0):
            raise ValueError(f"correlation {correlation} does not give a valid matrix for {k} symbols")
        if vol_per_step < 0 or jump_size < 0 or spread_bps < 0 or mean_size <= 0:
            raise ValueError("vol_per_step, jump_size, spread_bps must be >= 0 and mean_size > 0")
        if not 0.0 <= jump_probability <= 1.0:
            raise ValueError(f"jump_probability must be in [0, 1], got {jump_probability}")
        corr = np.full((k, k), correlation)
        np.fill_diagonal(corr, 1.0)
        self._chol = np.linalg.cholesky(corr)
        self._rng = np.random.default_rng(seed)
        self._log_prices = np.log(start)
        self.vol_per_step = vol_per_step
        self.jump_probability = jump_probability
        self.jump_size = jump_size
        self.spread_bps = spread_bps
        self.mean_size = mean_size
        self.last_ts_ms: int | None = None
        self.last_jumps = np.zeros(k, dtype=bool)  # which symbols jumped on the latest step

    @property
    def prices(self) -> np.ndarray:
        return np.exp(self._log_prices)

    def _increments(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k = len(self.symbols)
        shocks = self._rng.standard_normal((n, k)) @ self._chol.T * self.vol_per_step
        jumps = self._rng.random((n, k)) < self.jump_probability
        signs = np.where(self._rng.random((n, k)) < 0.5, -1.0, 1.0)
        sizes = self._rng.exponential(self.mean_size, (n, k))
        return shocks + jumps * signs * self.jump_size, jumps, sizes

    def step(self, ts_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """Advance one tick for all symbols: (prices, trade sizes), both shape (len(symbols),)."""
        inc, jumps, sizes = self._increments(1)
        self._log_prices = self._log_prices + inc[0]
        self.last_ts_ms = ts_ms
        self.last_jumps = jumps[0]
        return self.prices, sizes[0]

    def walk(self, n_steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance `n_steps` at once: (prices (n, k), sizes (n, k), jump mask (n, k)). Vectorised; draws the
        random numbers in a different order than `n_steps` calls of `step`, so the paths differ (each is
        deterministic for the seed)."""
        inc, jumps, sizes = self._increments(n_steps)
        log_path = self._log_prices + np.cumsum(inc, axis=0)
        if n_steps:
            self._log_prices = log_path[-1].copy()
            self.last_jumps = jumps[-1]
        return np.exp(log_path), sizes, jumps

    def quotes(self) -> tuple[np.ndarray, np.ndarray]:
        """(bid, ask) around the current prices as mids, `spread_bps` wide in total."""
        half = self.prices * self.spread_bps * 1e-4 * 0.5
        return self.prices - half, self.prices + half

    def bars(self, n_bars: int, ticks_per_bar: int, start_ts_ms: int, timeframe_ms: int) -> np.ndarray:
        """Simulate n_bars * ticks_per_bar ticks and return BAR_DTYPE bars of shape (n_bars, k)."""
        if n_bars < 1 or ticks_per_bar < 1:
            raise ValueError("n_bars and ticks_per_bar must be >= 1")
        first = self.prices
        prices, sizes, _ = self.walk(n_bars * ticks_per_bar)
        k = len(self.symbols)
        p = prices.reshape(n_bars, ticks_per_bar, k)
        out = np.empty((n_bars, k), dtype=BAR_DTYPE)
        out["ts_ms"] = (start_ts_ms + np.arange(n_bars, dtype=np.int64) * timeframe_ms)[:, None]
        out["open"] = np.vstack([first, p[:-1, -1, :]])
        out["high"] = np.maximum(p.max(axis=1), out["open"])
        out["low"] = np.minimum(p.min(axis=1), out["open"])
        out["close"] = p[:, -1, :]
        out["volume"] = sizes.reshape(n_bars, ticks_per_bar, k).sum(axis=1)
        return out

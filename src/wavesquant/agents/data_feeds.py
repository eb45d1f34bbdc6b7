"""data_feeds: market data in. Replays recorded candle/tick files at a chosen speed, or runs a seeded synthetic
market; publishes tick batches (HFT) and closed bars (FAST), and watches its own feeds for staleness."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from wavesquant.agents.base import Agent
from wavesquant.bus.base import Bus
from wavesquant.config import ReplayFile, Settings
from wavesquant.core.clock import Clock
from wavesquant.market import bars as mbars
from wavesquant.market.books import BookSnapshot, load_book_snapshots
from wavesquant.market.loaders import load_bars, load_quotes, load_trades, symbol_from_filename
from wavesquant.market.replay import RateGate, ReplayCursor, ReplaySeries
from wavesquant.market.synthetic import SyntheticMarket
from wavesquant.messages import Bar, Envelope, OrderBook, TickBatch

STALE_FEED_S = 10.0


def open_replay_file(spec: ReplayFile) -> ReplaySeries:
    """Load one recorded file; exchange/symbol/timeframe default to what its name says."""
    exchange, symbol, timeframe = symbol_from_filename(spec.path)
    exchange = (spec.exchange or exchange).lower()
    symbol = spec.symbol or symbol
    name = spec.path.name
    if "_trades" in name:
        return ReplaySeries(exchange, symbol, None, load_trades(spec.path))
    if "_quotes" in name:
        return ReplaySeries(exchange, symbol, None, load_quotes(spec.path))
    return ReplaySeries(exchange, symbol, spec.timeframe or timeframe or "1m", load_bars(spec.path))


class DataFeedsAgent(Agent):
    name = "data_feeds"

    def __init__(self, settings: Settings, bus: Bus, clock: Clock, consumer_id: str | None = None) -> None:
        super().__init__(settings, bus, clock, consumer_id)
        cfg = settings.data_feeds
        self.cfg = cfg
        self.market: SyntheticMarket | None = None
        self.cursor: ReplayCursor | None = None
        self.book_queue: deque[tuple[str, str, BookSnapshot]] = deque()
        self.aggregator: mbars.BarAggregator | None = None
        self.last_tick_ns: dict[str, int] = {}
        self._pending_bars: list[mbars.Bar] = []  # closed by ticks, published by the FAST loop
        self._stale: list[str] = []
        self._replay_done_logged = False
        if cfg.source == "synthetic":
            syn = cfg.synthetic
            self.market = SyntheticMarket(syn.symbols, syn.start_prices, seed=syn.seed, vol_per_step=syn.vol_per_tick,
                                          correlation=syn.correlation, jump_probability=0.0005, jump_size=0.01)
            self.aggregator = mbars.BarAggregator(syn.bar_timeframe)
            self.tick_gate = RateGate(syn.ticks_per_second)
        else:
            if not cfg.replay.files:
                raise ValueError("data_feeds.replay.files is empty: list at least one CSV file to replay")
            books = [f for f in cfg.replay.files if _is_book_file(f.path)]
            series = [open_replay_file(f) for f in cfg.replay.files if not _is_book_file(f.path)]
            self.cursor = ReplayCursor(series, loop=cfg.replay.loop) if series else None
            self.book_queue = _merged_books(books)
            self.book_gate = RateGate(cfg.replay.ticks_per_second)
            self.bar_gate = RateGate(cfg.replay.bars_per_second)
            self.tick_gate = RateGate(cfg.replay.ticks_per_second)
            self.aggregator = mbars.BarAggregator("1m")
        self.loop("hft_data_feeds", self.publish_ticks)
        self.loop("fast_strategy_feeds", self.publish_bars)
        self.loop("tactical_intelligence_feeds", self.check_feed_health)
        self.loop("strategic_macro_feeds", self.report_feed_stats)

    @property
    def _replays_ticks(self) -> bool:
        return self.cursor is not None and any(s.timeframe is None for s in self.cursor.series)

    # HFT: ticks ------------------------------------------------------------------------------------------
    async def publish_ticks(self) -> None:
        now_ns = self.clock.now_ns()
        if self.market is not None:
            n = self.tick_gate.due(now_ns, cap=10_000)
            if n:
                await self._publish_synthetic_ticks(n, now_ns)
        elif self._replays_ticks:
            await self._publish_replayed_ticks(self.tick_gate.due(now_ns, cap=10_000))
        if self.book_queue:
            await self._publish_books(self.book_gate.due(now_ns, cap=1_000))

    async def _publish_books(self, n: int) -> None:
        msgs: list[Envelope] = []
        for _ in range(min(n, len(self.book_queue))):
            exchange, symbol, snap = self.book_queue.popleft()
            try:
                msgs.append(self.message(OrderBook, exchange=exchange, symbol=symbol, event_ts_ms=snap.ts_ms,
                                         bids=snap.bids.tolist(), asks=snap.asks.tolist()))
            except ValidationError as exc:
                self.counters["bad_books"] += 1
                self.log.warning("book_invalid", symbol=symbol, error=str(exc).splitlines()[0])
            self.last_tick_ns[symbol] = self.clock.now_ns()
        if msgs:
            await self.bus.publish_many(msgs)
            self.counters["books"] += len(msgs)

    async def _publish_synthetic_ticks(self, n: int, now_ns: int) -> None:
        assert self.market is not None and self.aggregator is not None
        syn = self.cfg.synthetic
        prices, sizes, _ = self.market.walk(n)
        k = len(self.market.symbols)
        now_ms = now_ns // 1_000_000
        step_ms = 1000.0 / syn.ticks_per_second
        ts = (now_ms - (n - 1 - np.arange(n)) * step_ms).astype(np.int64)
        half = prices * self.market.spread_bps * 1e-4 * 0.5
        symbols = self.market.symbols * n
        batch = self.message(
            TickBatch, exchange=syn.exchange, symbols=symbols, event_ts_ms=np.repeat(ts, k).tolist(),
            prices=prices.ravel().tolist(), sizes=sizes.ravel().tolist(),
            bids=(prices - half).ravel().tolist(), asks=(prices + half).ravel().tolist(),
        )
        await self.bus.publish(batch)
        self.counters["ticks"] += n * k
        for j, symbol in enumerate(self.market.symbols):
            self.last_tick_ns[symbol] = now_ns
            self._pending_bars.extend(self.aggregator.update_batch(symbol, ts, prices[:, j], sizes[:, j]))

    async def _publish_replayed_ticks(self, n: int) -> None:
        assert self.cursor is not None and self.aggregator is not None
        rows = self.cursor.take(n)
        if not rows:
            return self._note_replay_done()
        by_exchange: dict[str, list[tuple[str, np.void]]] = {}
        for w, row in rows:
            s = self.cursor.series[w]
            by_exchange.setdefault(s.exchange, []).append((s.symbol, row))
        msgs: list[Envelope] = []
        for exchange, items in by_exchange.items():
            msg = self._tick_batch(exchange, items)
            if msg is not None:
                msgs.append(msg)
        await self.bus.publish_many(msgs)
        now_ns = self.clock.now_ns()
        for w, row in rows:
            s = self.cursor.series[w]
            self.last_tick_ns[s.symbol] = now_ns
            price = _row_price(row)
            if price is not None:
                size = float(row["size"]) if "size" in row.dtype.names else 0.0
                self._pending_bars.extend(self.aggregator.update(s.symbol, int(row["ts_ms"]), price,
                                                                 size if np.isfinite(size) else 0.0))

    def _tick_batch(self, exchange: str, items: list[tuple[str, np.void]]) -> TickBatch | None:
        symbols, ts, prices, sizes, bids, asks = [], [], [], [], [], []
        quotes = all("bid" in row.dtype.names for _, row in items)
        for symbol, row in items:
            price = _row_price(row)
            if price is None:
                self.counters["bad_rows"] += 1
                continue
            symbols.append(symbol)
            ts.append(int(row["ts_ms"]))
            prices.append(price)
            size = float(row["size"]) if "size" in row.dtype.names else float(row["bid_size"] + row["ask_size"])
            sizes.append(size if np.isfinite(size) and size >= 0 else 0.0)
            if quotes:
                bids.append(float(row["bid"]))
                asks.append(float(row["ask"]))
        if not symbols:
            return None
        try:
            msg = self.message(TickBatch, exchange=exchange, symbols=symbols, event_ts_ms=ts, prices=prices,
                               sizes=sizes, bids=bids or None, asks=asks or None)
        except ValidationError as exc:
            self.counters["bad_rows"] += len(symbols)
            self.log.warning("replay_batch_invalid", error=str(exc).splitlines()[0])
            return None
        self.counters["ticks"] += len(symbols)
        return msg

    # FAST: bars ------------------------------------------------------------------------------------------
    async def publish_bars(self) -> None:
        bars: list[tuple[str, mbars.Bar]] = []
        if self.market is not None:
            assert self.aggregator is not None
            self._pending_bars.extend(self.aggregator.close_due(self.clock.now_ms()))
            bars = [(self.cfg.synthetic.exchange, b) for b in self._pending_bars]
        elif self.cursor is not None:
            bars = [(self._exchange_of(b.symbol), b) for b in self._pending_bars]
            if not self._replays_ticks:
                bars += self._next_recorded_bars(self.bar_gate.due(self.clock.now_ns(), cap=10_000))
        self._pending_bars = []
        msgs: list[Envelope] = []
        for exchange, b in bars:
            try:
                msgs.append(self.message(Bar, exchange=exchange, symbol=b.symbol, timeframe=b.timeframe,
                                         open_ts_ms=b.open_ts_ms, open=b.open, high=b.high, low=b.low,
                                         close=b.close, volume=b.volume))
            except ValidationError as exc:
                self.counters["bad_bars"] += 1
                self.log.warning("bar_invalid", symbol=b.symbol, error=str(exc).splitlines()[0])
        if msgs:
            await self.bus.publish_many(msgs)
            self.counters["bars"] += len(msgs)

    def _next_recorded_bars(self, n: int) -> list[tuple[str, mbars.Bar]]:
        assert self.cursor is not None
        if n <= 0:
            return []
        rows = self.cursor.take(n)
        if not rows:
            self._note_replay_done()
            return []
        now_ns = self.clock.now_ns()
        out = []
        for w, row in rows:
            s = self.cursor.series[w]
            self.last_tick_ns[s.symbol] = now_ns
            out.append((s.exchange, mbars.Bar(s.symbol, s.timeframe or "1m", int(row["ts_ms"]), float(row["open"]),
                                              float(row["high"]), float(row["low"]), float(row["close"]),
                                              float(row["volume"]))))
        return out

    def _exchange_of(self, symbol: str) -> str:
        assert self.cursor is not None
        return next((s.exchange for s in self.cursor.series if s.symbol == symbol), "replay")

    def _note_replay_done(self) -> None:
        if not self._replay_done_logged:
            self._replay_done_logged = True
            self.counters["replay_done"] = 1
            self.log.info("replay_finished", rows=len(self.cursor) if self.cursor else 0)

    # TACTICAL / STRATEGIC ----------------------------------------------------------------------------------
    async def check_feed_health(self) -> None:
        now = self.clock.now_ns()
        stale = [s for s, t in self.last_tick_ns.items() if (now - t) / 1e9 > STALE_FEED_S]
        self._stale = stale if not self.counters.get("replay_done") else []

    def extra_problems(self) -> list[str]:
        stale = self._stale
        return [f"no data for {len(stale)} symbols for over {STALE_FEED_S:.0f}s: {', '.join(stale[:5])}"] if stale else []

    async def report_feed_stats(self) -> None:
        self.log.info("feed_stats", ticks=self.counters["ticks"], bars=self.counters["bars"],
                      bad_rows=self.counters["bad_rows"],
                      replay_position=self.cursor.position if self.cursor else None)


def _is_book_file(path: Path) -> bool:
    return "book_snapshot" in path.name


def _merged_books(specs: list[ReplayFile]) -> deque[tuple[str, str, BookSnapshot]]:
    """Every snapshot of every book file, in time order, tagged with its venue and symbol."""
    items = []
    for spec in specs:
        exchange, symbol, _ = symbol_from_filename(spec.path)
        for snap in load_book_snapshots(spec.path):
            items.append((spec.exchange or exchange, spec.symbol or symbol, snap))
    items.sort(key=lambda item: item[2].ts_ms)
    return deque(items)


def _row_price(row: np.void) -> float | None:
    names = row.dtype.names or ()
    if "price" in names:
        p = float(row["price"])
    elif "bid" in names:
        p = (float(row["bid"]) + float(row["ask"])) / 2
    else:
        p = float(row["close"])
    return p if np.isfinite(p) and p > 0 else None

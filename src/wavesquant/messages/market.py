"""Market data messages: tick batches (HFT path) and bars."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, model_validator

from wavesquant.messages.envelope import Envelope
from wavesquant.messages.fields import (
    MAX_BATCH,
    EpochMs,
    Name,
    Price,
    Quantity,
    Symbol,
)


class TickBatch(Envelope):
    """A batch of ticks from one venue, columnar so the HFT path can load it into numpy without a Python loop.
    Column i of every list describes tick i. `bids`/`asks` are present for quote ticks."""

    type: Literal["tick_batch"] = "tick_batch"
    exchange: Name
    symbols: tuple[Symbol, ...] = Field(min_length=1, max_length=MAX_BATCH)
    event_ts_ms: tuple[EpochMs, ...] = Field(min_length=1, max_length=MAX_BATCH)
    prices: tuple[Price, ...] = Field(min_length=1, max_length=MAX_BATCH)
    sizes: tuple[Quantity, ...] = Field(min_length=1, max_length=MAX_BATCH)
    bids: tuple[Price, ...] | None = Field(default=None, max_length=MAX_BATCH)
    asks: tuple[Price, ...] | None = Field(default=None, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _columns_align(self) -> Self:
        n = len(self.symbols)
        columns = {"event_ts_ms": self.event_ts_ms, "prices": self.prices, "sizes": self.sizes}
        if self.bids is not None:
            columns["bids"] = self.bids
        if self.asks is not None:
            columns["asks"] = self.asks
        for name, column in columns.items():
            if len(column) != n:
                raise ValueError(f"{name} has {len(column)} entries, symbols has {n}")
        if self.bids is not None and self.asks is not None and any(b > a for b, a in zip(self.bids, self.asks)):
            raise ValueError("a bid is above its ask (crossed quote)")
        return self

    def __len__(self) -> int:
        return len(self.symbols)


class Bar(Envelope):
    """One closed OHLCV bar; `open_ts_ms` is the bar's open time."""

    type: Literal["bar"] = "bar"
    exchange: Name
    symbol: Symbol
    timeframe: str = Field(pattern=r"^[1-9][0-9]{0,3}(s|m|h|d)$")
    open_ts_ms: EpochMs
    open: Price
    high: Price
    low: Price
    close: Price
    volume: Quantity

    @model_validator(mode="after")
    def _ohlc_consistent(self) -> Self:
        if self.low > min(self.open, self.close) or self.high < max(self.open, self.close):
            raise ValueError(f"inconsistent OHLC: low {self.low} high {self.high} open {self.open} close {self.close}")
        return self




BookLevel = tuple[Price, Quantity]
MAX_BOOK_LEVELS = 1000


class OrderBook(Envelope):
    """A snapshot of one venue's book for one symbol: bids best (highest) first, asks best (lowest) first."""

    type: Literal["order_book"] = "order_book"
    exchange: Name
    symbol: Symbol
    event_ts_ms: EpochMs
    bids: tuple[BookLevel, ...] = Field(max_length=MAX_BOOK_LEVELS)
    asks: tuple[BookLevel, ...] = Field(max_length=MAX_BOOK_LEVELS)

    @model_validator(mode="after")
    def _sorted_and_uncrossed(self) -> Self:
        if any(a[0] <= b[0] for a, b in zip(self.bids, self.bids[1:])):
            raise ValueError("bids must be strictly descending by price")
        if any(a[0] >= b[0] for a, b in zip(self.asks, self.asks[1:])):
            raise ValueError("asks must be strictly ascending by price")
        if self.bids and self.asks and self.bids[0][0] >= self.asks[0][0]:
            raise ValueError(f"crossed book: best bid {self.bids[0][0]} >= best ask {self.asks[0][0]}")
        return self

    @property
    def mid(self) -> float | None:
        return (self.bids[0][0] + self.asks[0][0]) / 2 if self.bids and self.asks else None


def prices_of(msg: Envelope) -> list[tuple[str, float]]:
    """(symbol, latest price) a market message carries: a tick's price, a bar's close, a book's mid."""
    if isinstance(msg, TickBatch):
        return list(dict(zip(msg.symbols, msg.prices)).items())
    if isinstance(msg, Bar):
        return [(msg.symbol, msg.close)]
    if isinstance(msg, OrderBook) and msg.mid is not None:
        return [(msg.symbol, msg.mid)]
    return []


__all__ = ["Bar", "OrderBook", "TickBatch", "prices_of"]

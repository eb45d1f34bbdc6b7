"""The trade journal: one SQLite file (WAL) with every order and fill, rebuilt incrementally from the event log.

The event log in Redis is the source of truth and is trimmed eventually; the journal keeps the trading history
for good, queryable without Redis. Writes are idempotent: a fill is stored once per `fill_id` however often it is
recorded, and an order row only moves forward in time (an older update never overwrites a newer one).

`pnl_by_strategy` books the stored fills, in time order, through `Portfolio`, so the journal's PnL is computed
exactly like the live system's.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from wavesquant.execution.venues.base import Fill
from wavesquant.portfolio.positions import Portfolio
from wavesquant.types import Liquidity, Side

SCHEMA_VERSION = 1
NO_STRATEGY = ""  # orders/fills whose strategy is unknown (adopted from the venue)


class JournalError(Exception):
    """The journal file cannot be used (newer schema, not a journal, unreadable)."""


@dataclass(frozen=True, slots=True)
class JournalOrder:
    client_order_id: str
    strategy_id: str | None
    signal_id: str | None
    symbol: str
    side: str
    type: str | None  # None when only execution reports were seen (the creation event was trimmed)
    quantity: float
    limit_price: float | None
    status: str
    filled_quantity: float
    average_price: float | None
    fees: float
    created_ms: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class JournalFill:
    fill_id: str
    client_order_id: str
    strategy_id: str | None
    symbol: str
    side: str
    quantity: float
    price: float
    fee: float
    fee_currency: str
    liquidity: str
    ts_ms: int

    def to_fill(self) -> Fill:
        return Fill(client_order_id=self.client_order_id, venue_order_id="", fill_id=self.fill_id,
                    symbol=self.symbol, side=Side(self.side), quantity=self.quantity, price=self.price,
                    fee=self.fee, fee_currency=self.fee_currency, liquidity=Liquidity(self.liquidity),
                    ts_ms=self.ts_ms)


@dataclass(frozen=True, slots=True)
class StrategyPnl:
    """One strategy's position in one symbol, from its fills. `fees` are in the quote currency (fees paid in
    another currency are not in it, see `Portfolio.other_fees`); `realized_pnl` is net of those fees."""

    strategy_id: str
    symbol: str
    net_quantity: float
    avg_entry_price: float
    realized_pnl: float
    fees: float
    fills: int


_SCHEMA_V1 = """
CREATE TABLE orders (
    client_order_id TEXT PRIMARY KEY,
    strategy_id     TEXT,
    signal_id       TEXT,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    type            TEXT,
    quantity        REAL NOT NULL,
    limit_price     REAL,
    status          TEXT NOT NULL,
    filled_quantity REAL NOT NULL DEFAULT 0,
    average_price   REAL,
    fees            REAL NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL
);
CREATE INDEX orders_strategy ON orders (strategy_id, symbol);
CREATE INDEX orders_created ON orders (created_ms);
CREATE TABLE fills (
    fill_id         TEXT PRIMARY KEY,
    client_order_id TEXT NOT NULL,
    strategy_id     TEXT,
    symbol          TEXT NOT NULL,
    side            TEXT NOT NULL,
    quantity        REAL NOT NULL CHECK (quantity > 0),
    price           REAL NOT NULL CHECK (price > 0),
    fee             REAL NOT NULL DEFAULT 0,
    fee_currency    TEXT NOT NULL DEFAULT '',
    liquidity       TEXT NOT NULL,
    ts_ms           INTEGER NOT NULL
);
CREATE INDEX fills_order ON fills (client_order_id);
CREATE INDEX fills_strategy ON fills (strategy_id, symbol, ts_ms);
CREATE INDEX fills_ts ON fills (ts_ms);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# from_version -> the SQL that brings the schema to from_version + 1; each runs in one transaction together
# with the user_version bump, so a crash leaves the file at either version, never between.
_MIGRATIONS: dict[int, str] = {
    0: _SCHEMA_V1,
}

_ORDER_COLUMNS = ("client_order_id, strategy_id, signal_id, symbol, side, type, quantity, limit_price, status, "
                  "filled_quantity, average_price, fees, created_ms, updated_ms")
_FILL_COLUMNS = ("fill_id, client_order_id, strategy_id, symbol, side, quantity, price, fee, fee_currency, liquidity, "
                 "ts_ms")
LAST_EVENT_ID = "last_event_id"


class TradeJournal:
    """The journal file at `path` (created with its directory). Use as a context manager or call `close()`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._depth = 0  # transaction nesting
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot open journal {self.path}: {exc}") from None
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise JournalError(f"{self.path} is not a usable trade journal: {exc}") from None
        except JournalError:
            self._conn.close()
            raise

    # lifecycle -------------------------------------------------------------------------------------------
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise JournalError(f"{self.path} has journal schema v{version}, newer than this wq understands "
                               f"(v{SCHEMA_VERSION}): upgrade wq")
        if version == 0 and self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
            raise JournalError(f"{self.path} is an SQLite file but not a trade journal")
        while version < SCHEMA_VERSION:
            self._conn.executescript(f"BEGIN; {_MIGRATIONS[version]}; PRAGMA user_version = {version + 1}; COMMIT;")
            version += 1

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one atomic commit (nesting joins the outer transaction)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")
        finally:
            self._depth = 0

    # meta ------------------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    @property
    def last_event_id(self) -> str | None:
        """Id of the last event-log entry applied (None: nothing applied yet)."""
        return self.get_meta(LAST_EVENT_ID)

    def set_last_event_id(self, entry_id: str) -> None:
        self.set_meta(LAST_EVENT_ID, entry_id)

    # writes ----------------------------------------------------------------------------------------------
    def record_order_request(self, *, client_order_id: str, strategy_id: str | None, signal_id: str | None,
                             symbol: str, side: str, type: str, quantity: float, limit_price: float | None,
                             created_ms: int) -> None:
        """The order as it was created (its request). Keeps any status already known for it."""
        self._conn.execute(
            f"INSERT INTO orders ({_ORDER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'creating', 0, NULL, 0, ?, ?) "
            "ON CONFLICT (client_order_id) DO UPDATE SET "
            " strategy_id = coalesce(orders.strategy_id, excluded.strategy_id),"
            " signal_id = coalesce(orders.signal_id, excluded.signal_id),"
            " type = excluded.type, limit_price = excluded.limit_price, quantity = excluded.quantity,"
            " created_ms = min(orders.created_ms, excluded.created_ms)",
            (client_order_id, strategy_id or None, signal_id, symbol, side, type, quantity, limit_price,
             created_ms, created_ms),
        )

    def record_order_state(self, *, client_order_id: str, strategy_id: str | None, signal_id: str | None,
                           symbol: str, side: str, quantity: float, status: str, filled_quantity: float,
                           average_price: float | None, ts_ms: int) -> None:
        """The order's state as an execution report describes it. Never moves an order back in time: an
        update older than the stored one is ignored."""
        self._conn.execute(
            f"INSERT INTO orders ({_ORDER_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL, ?, NULL, ?, ?, ?, 0, ?, ?) "
            "ON CONFLICT (client_order_id) DO UPDATE SET "
            " strategy_id = coalesce(orders.strategy_id, excluded.strategy_id),"
            " signal_id = coalesce(orders.signal_id, excluded.signal_id),"
            " status = excluded.status, filled_quantity = excluded.filled_quantity,"
            " average_price = coalesce(excluded.average_price, orders.average_price),"
            " updated_ms = excluded.updated_ms "
            "WHERE excluded.updated_ms >= orders.updated_ms",
            (client_order_id, strategy_id or None, signal_id, symbol, side, quantity, status, filled_quantity,
             average_price, ts_ms, ts_ms),
        )

    def record_status(self, client_order_id: str, status: str, ts_ms: int) -> bool:
        """A state-machine transition of a known order (e.g. pending_cancel, which no report announces).
        False if the order is unknown or the stored state is newer."""
        cur = self._conn.execute(
            "UPDATE orders SET status = ?, updated_ms = ? WHERE client_order_id = ? AND updated_ms <= ?",
            (status, ts_ms, client_order_id, ts_ms),
        )
        return cur.rowcount > 0

    def record_fill(self, fill: JournalFill) -> bool:
        """Store a fill once (by fill_id); True if it was new. Without a strategy it takes its order's. The
        order's fee total follows its fills."""
        cur = self._conn.execute(
            f"INSERT INTO fills ({_FILL_COLUMNS}) VALUES (?, ?, coalesce(?, (SELECT strategy_id FROM orders "
            "WHERE client_order_id = ?)), ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (fill_id) DO NOTHING",
            (fill.fill_id, fill.client_order_id, fill.strategy_id or None, fill.client_order_id, fill.symbol,
             fill.side, fill.quantity, fill.price, fill.fee, fill.fee_currency, fill.liquidity, fill.ts_ms),
        )
        if cur.rowcount == 0:
            return False
        self._conn.execute(
            "UPDATE orders SET fees = (SELECT coalesce(sum(fee), 0) FROM fills "
            "WHERE fills.client_order_id = orders.client_order_id) WHERE client_order_id = ?",
            (fill.client_order_id,),
        )
        return True

    # queries ---------------------------------------------------------------------------------------------
    def fills(self, strategy: str | None = None, symbol: str | None = None,
              since_ms: int | None = None) -> list[JournalFill]:
        """Fills in time order (ties in the order they were recorded)."""
        where, args = _filters(strategy, symbol, since_ms, "ts_ms")
        rows = self._conn.execute(f"SELECT {_FILL_COLUMNS} FROM fills{where} ORDER BY ts_ms, rowid", args)
        return [JournalFill(*row) for row in rows]

    def orders(self, strategy: str | None = None, symbol: str | None = None, since_ms: int | None = None,
               status: str | None = None) -> list[JournalOrder]:
        """Orders by creation time."""
        where, args = _filters(strategy, symbol, since_ms, "created_ms")
        if status is not None:
            where += (" AND" if where else " WHERE") + " status = ?"
            args.append(status)
        rows = self._conn.execute(f"SELECT {_ORDER_COLUMNS} FROM orders{where} ORDER BY created_ms, rowid", args)
        return [JournalOrder(*row) for row in rows]

    def counts(self) -> dict[str, int]:
        return {"orders": int(self._conn.execute("SELECT count(*) FROM orders").fetchone()[0]),
                "fills": int(self._conn.execute("SELECT count(*) FROM fills").fetchone()[0])}

    def pnl_by_strategy(self) -> list[StrategyPnl]:
        """Per (strategy, symbol): net quantity, average entry, realised PnL net of fees, fees, fill count;
        from every stored fill in time order. Sorted by strategy, then symbol."""
        portfolio = Portfolio()
        counts: Counter[tuple[str, str]] = Counter()
        for fill in self.fills():
            strategy = fill.strategy_id or NO_STRATEGY
            portfolio.apply(fill.to_fill(), strategy)
            counts[(strategy, fill.symbol)] += 1
        rows = [
            StrategyPnl(p.strategy_id or NO_STRATEGY, p.symbol, p.quantity, p.avg_entry_price, p.realized_pnl,
                        p.fees, counts[(p.strategy_id or NO_STRATEGY, p.symbol)])
            for p in portfolio.positions()
        ]
        return sorted(rows, key=lambda r: (r.strategy_id, r.symbol))


def _filters(strategy: str | None, symbol: str | None, since_ms: int | None, ts_column: str) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if strategy is not None:
        if strategy == NO_STRATEGY:
            clauses.append("strategy_id IS NULL")
        else:
            clauses.append("strategy_id = ?")
            args.append(strategy)
    if symbol is not None:
        clauses.append("symbol = ?")
        args.append(symbol)
    if since_ms is not None:
        clauses.append(f"{ts_column} >= ?")
        args.append(since_ms)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

"""TradeJournal: schema, idempotent writes, queries and PnL computed through Portfolio."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from wavesquant.journal.store import SCHEMA_VERSION, JournalError, JournalFill, TradeJournal
from wavesquant.portfolio.positions import Portfolio

T0 = 1_700_000_000_000


def fill(fill_id: str, side: str, qty: float, price: float, ts: int, strategy: str | None = "trend_a",
         symbol: str = "BTC/USDT", fee: float = 0.0, fee_currency: str = "USDT", coid: str = "o1") -> JournalFill:
    return JournalFill(fill_id, coid, strategy, symbol, side, qty, price, fee, fee_currency, "taker", ts)


def test_new_journal_is_versioned_wal_and_created_with_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "var" / "deep" / "journal.sqlite"
    with TradeJournal(path) as journal:
        assert journal.schema_version == SCHEMA_VERSION == 1
        assert journal.last_event_id is None
        assert journal.counts() == {"orders": 0, "fills": 0}
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"orders", "fills", "meta"} <= tables
    conn.close()


def test_last_event_id_persists_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with TradeJournal(path) as journal, journal.transaction():
        journal.set_last_event_id("1700000000000-3")
    with TradeJournal(path) as journal:
        assert journal.last_event_id == "1700000000000-3"


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    TradeJournal(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(JournalError, match="newer than this wq"):
        TradeJournal(path)


def test_foreign_sqlite_file_and_garbage_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE something (x)")
    conn.commit()
    conn.close()
    with pytest.raises(JournalError, match="not a trade journal"):
        TradeJournal(other)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(JournalError, match="not a usable trade journal"):
        TradeJournal(garbage)


def test_fill_recorded_twice_is_stored_once_and_order_fees_follow_fills(tmp_path: Path) -> None:
    with TradeJournal(tmp_path / "j.sqlite") as journal:
        journal.record_order_request(client_order_id="o1", strategy_id="trend_a", signal_id="s1", symbol="BTC/USDT",
                                     side="buy", type="market", quantity=2.0, limit_price=None, created_ms=T0)
        assert journal.record_fill(fill("f1", "buy", 1.0, 100.0, T0 + 1, fee=0.1)) is True
        assert journal.record_fill(fill("f1", "buy", 1.0, 100.0, T0 + 1, fee=0.1)) is False
        assert journal.record_fill(fill("f2", "buy", 1.0, 102.0, T0 + 2, fee=0.2)) is True
        assert [f.fill_id for f in journal.fills()] == ["f1", "f2"]
        [order] = journal.orders()
        assert order.fees == pytest.approx(0.3)
        assert order.status == "creating" and order.type == "market" and order.strategy_id == "trend_a"


def test_fill_without_strategy_takes_its_orders(tmp_path: Path) -> None:
    with TradeJournal(tmp_path / "j.sqlite") as journal:
        journal.record_order_request(client_order_id="o1", strategy_id="trend_a", signal_id="s1", symbol="BTC/USDT",
                                     side="buy", type="market", quantity=1.0, limit_price=None, created_ms=T0)
        journal.record_fill(fill("f1", "buy", 1.0, 100.0, T0 + 1, strategy=None))
        journal.record_fill(fill("f2", "buy", 1.0, 100.0, T0 + 1, strategy=None, coid="unknown"))
        by_id = {f.fill_id: f for f in journal.fills()}
        assert by_id["f1"].strategy_id == "trend_a"
        assert by_id["f2"].strategy_id is None
        assert [f.fill_id for f in journal.fills(strategy="")] == ["f2"]


def test_order_state_never_moves_back_in_time(tmp_path: Path) -> None:
    common = {"client_order_id": "o1", "strategy_id": "trend_a", "signal_id": "s1", "symbol": "BTC/USDT",
              "side": "buy", "quantity": 1.0}
    with TradeJournal(tmp_path / "j.sqlite") as journal:
        journal.record_order_state(**common, status="filled", filled_quantity=1.0, average_price=100.0, ts_ms=T0 + 10)
        journal.record_order_state(**common, status="open", filled_quantity=0.0, average_price=None, ts_ms=T0 + 5)
        assert journal.record_status("o1", "pending_cancel", T0 + 6) is False
        assert journal.record_status("nope", "open", T0 + 20) is False
        [order] = journal.orders()
        assert (order.status, order.filled_quantity, order.average_price) == ("filled", 1.0, 100.0)
        assert order.type is None  # only a report was seen
        # the request arriving later fills in what reports do not carry, without touching the state
        journal.record_order_request(client_order_id="o1", strategy_id="trend_a", signal_id="s1", symbol="BTC/USDT",
                                     side="buy", type="limit", quantity=1.0, limit_price=99.5, created_ms=T0)
        [order] = journal.orders()
        assert (order.type, order.limit_price, order.status, order.created_ms) == ("limit", 99.5, "filled", T0)


def test_queries_filter_by_strategy_symbol_time_and_status(tmp_path: Path) -> None:
    with TradeJournal(tmp_path / "j.sqlite") as journal:
        journal.record_fill(fill("a", "buy", 1.0, 100.0, T0, strategy="s_one"))
        journal.record_fill(fill("b", "buy", 1.0, 10.0, T0 + 5, strategy="s_one", symbol="ETH/USDT"))
        journal.record_fill(fill("c", "sell", 1.0, 101.0, T0 + 10, strategy="s_two"))
        assert [f.fill_id for f in journal.fills(strategy="s_one")] == ["a", "b"]
        assert [f.fill_id for f in journal.fills(symbol="BTC/USDT")] == ["a", "c"]
        assert [f.fill_id for f in journal.fills(since_ms=T0 + 5)] == ["b", "c"]
        assert [f.fill_id for f in journal.fills(strategy="s_one", symbol="ETH/USDT", since_ms=T0 + 1)] == ["b"]
        for i, status in enumerate(("filled", "open")):
            journal.record_order_state(client_order_id=f"o{i}", strategy_id="s_one", signal_id=None,
                                       symbol="BTC/USDT", side="buy", quantity=1.0, status=status,
                                       filled_quantity=0.0, average_price=None, ts_ms=T0 + i)
        assert [o.client_order_id for o in journal.orders(status="open")] == ["o1"]
        assert [o.client_order_id for o in journal.orders(strategy="s_one", since_ms=T0)] == ["o0", "o1"]


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    with TradeJournal(tmp_path / "j.sqlite") as journal:
        with pytest.raises(RuntimeError), journal.transaction():
            journal.record_fill(fill("a", "buy", 1.0, 100.0, T0))
            journal.set_last_event_id("5-0")
            raise RuntimeError("crash mid-page")
        assert journal.fills() == [] and journal.last_event_id is None


def test_pnl_by_strategy_matches_portfolio_on_the_same_fills(tmp_path: Path) -> None:
    fills = [
        fill("1", "buy", 1.0, 100.0, T0 + 1, strategy="trend_a", fee=0.1),
        fill("2", "buy", 2.0, 50.0, T0 + 2, strategy="mr_b", symbol="ETH/USDT", fee=0.001, fee_currency="ETH"),
        fill("3", "sell", 1.0, 110.0, T0 + 3, strategy="trend_a", fee=0.11),
        fill("4", "buy", 0.5, 120.0, T0 + 4, strategy="trend_a", fee=0.0),
        fill("5", "sell", 1.0, 55.0, T0 + 5, strategy="mr_b", symbol="ETH/USDT", fee=0.05),
    ]
    with TradeJournal(tmp_path / "j.sqlite") as journal:
        for f in reversed(fills):  # stored out of order: the report sorts by time
            journal.record_fill(f)
        rows = {(r.strategy_id, r.symbol): r for r in journal.pnl_by_strategy()}
    assert list(rows) == [("mr_b", "ETH/USDT"), ("trend_a", "BTC/USDT")]
    trend = rows[("trend_a", "BTC/USDT")]
    assert trend.net_quantity == pytest.approx(0.5)
    assert trend.avg_entry_price == pytest.approx(120.0)
    assert trend.realized_pnl == pytest.approx(10.0 - 0.21)
    assert trend.fees == pytest.approx(0.21)
    assert trend.fills == 3
    mr = rows[("mr_b", "ETH/USDT")]
    assert mr.net_quantity == pytest.approx(1.0)
    assert mr.fees == pytest.approx(0.001 * 50.0 + 0.05)  # base-currency fee converted at the fill price
    assert mr.realized_pnl == pytest.approx(5.0 - 0.05 - 0.05)
    portfolio = Portfolio()
    for f in fills:
        portfolio.apply(f.to_fill(), f.strategy_id or "")
    for p in portfolio.positions():
        row = rows[(p.strategy_id or "", p.symbol)]
        assert (row.net_quantity, row.realized_pnl, row.fees) == pytest.approx((p.quantity, p.realized_pnl, p.fees))

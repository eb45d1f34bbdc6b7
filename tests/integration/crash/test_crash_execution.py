"""Exactly-once under kill -9: the execution agent as a real process over the real Redis, SIGKILLed at seeded
random points while approved orders stream in, restarted each time. The paper venue keeps its orders and fills
in Redis (it outlives the execution process like an exchange), so after the run we can check what the
"exchange" saw against what execution reported:

- every client order id reached the venue exactly once, and its fills add up to its quantity, never more;
- every order has a final execution report; no fill id is reported twice with different content;
- positions from the venue's fills and from the fill reports in the event log (by fill id) agree with the
  orders;
- the event log still replays every order to its final state (what the next restart rebuilds from).

Kills land two ways: right after the venue took a random 1-15 orders of the backlog that piled up while
execution was down (execution submits a whole batch before it logs and acks any of it, so these kills leave
orders the venue has but the event log and the stream acks do not: the window exactly-once has to survive),
or a random 0-400 ms after the restarted process reported running. Each kill is inspected post mortem.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from support.crash_harness import (
    AgentProcess,
    OrderFeeder,
    Supervisor,
    TickFeeder,
    new_order,
    paper_fill_rows,
    paper_orders,
    pending_count,
    read_entries,
    read_stream,
    sync_redis,
    wait_running,
    write_config,
    xadd,
)
from support.polling import wait_until
from wavesquant.execution.orders import Order, Transition, qty_tol, request_from_dict
from wavesquant.messages import CancelOrder, Channel, ExecutionReport, NewOrder, OrderTransition
from wavesquant.types import OrderStatus, Side

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

PRICES = {"BTC/USDT": 60_000.0, "ETH/USDT": 3_000.0}
QTY = {"BTC/USDT": (0.001, 0.05), "ETH/USDT": (0.01, 1.0)}
GROUP = "execution"  # the execution agent's consumer group on the orders stream


@dataclass(frozen=True)
class KillRecord:
    """What the system looked like right after one SIGKILL (the process is dead: nothing moves)."""

    mode: str
    at_venue: int
    logged: int
    venue_not_logged: int  # placed at the venue, not in the event log: only the venue can tell
    pending: int  # delivered to execution, never acked: redelivered on restart

    @property
    def in_window(self) -> bool:
        return self.venue_not_logged > 0 or self.pending > 0


def _logged_requests(client: redis.Redis, prefix: str) -> set[str]:
    return {
        m.client_order_id
        for m in read_stream(client, prefix, Channel.EVENTS)
        if isinstance(m, OrderTransition) and m.request is not None
    }


def _post_mortem(client: redis.Redis, prefix: str, mode: str) -> KillRecord:
    venue = set(paper_orders(client, prefix))
    logged = _logged_requests(client, prefix)
    return KillRecord(
        mode,
        len(venue),
        len(logged),
        len(venue - logged),
        pending_count(client, prefix, Channel.ORDERS, GROUP),
    )


def _wait_venue_count(
    client: redis.Redis, key: str, target: int, ex: AgentProcess, limit_s: float = 5.0
) -> None:
    """Poll (0.5 ms) until the venue holds `target` orders; after `limit_s` (nothing left to place) go on."""
    until = time.monotonic() + limit_s
    while ex.alive() and client.hlen(key) < target and time.monotonic() < until:
        time.sleep(0.0005)


def _kill_at_random_points(
    client: redis.Redis, prefix: str, ex: AgentProcess, rng: random.Random, kills: int, max_kills: int = 12
) -> list[KillRecord]:
    """Kill, inspect, restart, `kills` times, and on (up to `max_kills`) until a kill has landed in the window
    the test is about: the window is a few ms wide on a fast machine, so a fixed number of kills may all miss
    it. Even kills: once the venue took 1-15 more orders (mid-batch: the backlog that piled up while execution
    was down is being placed, not yet logged or acked). Odd kills: a random 0-400 ms after the restarted
    process reported running (reads, fills from ticks, loops)."""
    records: list[KillRecord] = []
    key = f"{prefix}paper:orders"
    i = 0
    while i < kills or (i < max_kills and not any(r.in_window for r in records)):
        if i % 2 == 0:
            base = client.hlen(key)
            take = rng.randint(1, 15)
            mode = f"after {take} more venue orders"
            _wait_venue_count(client, key, base + take, ex)
        else:
            wait_running(client, ex)
            delay = rng.uniform(0.0, 0.4)
            mode = f"{delay * 1000:.0f} ms after running"
            time.sleep(delay)
        assert ex.alive(), f"execution died by itself:\n{ex.log_tail()}"
        ex.kill9()
        records.append(_post_mortem(client, prefix, mode))
        time.sleep(rng.uniform(0.0, 0.3))  # stay down a little: orders pile up
        ex.start()
        i += 1
    return records


def _final_reports(client: redis.Redis, prefix: str) -> dict[str, ExecutionReport]:
    final: dict[str, ExecutionReport] = {}
    for m in read_stream(client, prefix, Channel.EXECUTION_REPORTS):
        if isinstance(m, ExecutionReport) and m.status.is_terminal:
            final.setdefault(m.client_order_id, m)
    return final


def _wait_final_reports(client: redis.Redis, prefix: str, n: int) -> dict[str, ExecutionReport]:
    def all_final() -> dict[str, ExecutionReport] | None:
        final = _final_reports(client, prefix)
        return final if len(final) >= n else None

    return wait_until(all_final, 30, f"a final report for each of {n} orders", interval=0.05)


def _fill_reports(client: redis.Redis, prefix: str) -> list[ExecutionReport]:
    return [
        m
        for m in read_stream(client, prefix, Channel.EVENTS)
        if isinstance(m, ExecutionReport) and m.kind == "fill"
    ]


@dataclass
class Replay:
    orders: dict[str, Order]  # every order whose logged history replays
    reordered: set[str]  # orders whose transitions sit in the log out of creation order (known src bug)


def _replay_event_log(client: redis.Redis, prefix: str) -> Replay:
    """Rebuild every order from the event log the way execution does on start (its request, then its
    transitions in log order). An order whose history does not replay fails the test, with its history, unless
    its entries were written out of creation order: that is the concurrent-flush bug, reported and pinned by
    test_crash_event_log_order.py, and the test only counts it."""
    requests: dict[str, tuple[dict[str, object], int]] = {}
    logged: dict[str, list[tuple[str, OrderTransition]]] = defaultdict(list)
    for entry_id, m in read_entries(client, prefix, Channel.EVENTS):
        if not isinstance(m, OrderTransition):
            continue
        logged[m.client_order_id].append((entry_id, m))
        if m.request is not None:
            requests.setdefault(m.client_order_id, (m.request, m.ts_ms))
    reordered = {c for c, h in logged.items() if [m.ts_ns for _, m in h] != sorted(m.ts_ns for _, m in h)}
    rebuilt: dict[str, Order] = {}
    broken: dict[str, list[str]] = {}
    for coid, (req, ts) in requests.items():
        history = [Transition.from_dict(t) for _, m in logged[coid] for t in m.transitions]
        try:
            rebuilt[coid] = Order.from_history(request_from_dict(req), ts, history)
        except ValueError:
            if coid not in reordered:
                broken[coid] = [
                    f"entry {e} ts_ns {m.ts_ns}: " + ", ".join(
                        f"{t.get('event')} {t.get('from_status')}->{t.get('to_status')}" for t in m.transitions)
                    + (" (request)" if m.request is not None else "")
                    for e, m in logged[coid]
                ]
    assert not broken, (
        f"{len(broken)} orders do not replay from the event log, e.g. {next(iter(broken.items()))}"
    )
    return Replay(rebuilt, reordered)


def _check_fill_ids_consistent(
    rows: list[tuple[str, tuple[object, ...]]], where: str
) -> dict[str, tuple[object, ...]]:
    by_id: dict[str, set[tuple[object, ...]]] = defaultdict(set)
    for fill_id, content in rows:
        by_id[fill_id].add(content)
    conflicting = {f: c for f, c in by_id.items() if len(c) > 1}
    assert not conflicting, f"{where}: fill ids with different content: {conflicting}"
    return {f: next(iter(c)) for f, c in by_id.items()}


def _positions(fills: dict[str, tuple[object, ...]]) -> dict[str, float]:
    """Signed net quantity per symbol; content = (coid, symbol, side, qty, price)."""
    out: dict[str, float] = defaultdict(float)
    for _, symbol, side, qty, _ in fills.values():
        out[str(symbol)] += Side(str(side)).sign * float(qty)  # type: ignore[arg-type]
    return dict(out)


def _assert_close(a: dict[str, float], b: dict[str, float], what: str) -> None:
    assert set(a) == set(b), f"{what}: symbols {sorted(a)} != {sorted(b)}"
    for s, qty in a.items():
        assert abs(qty - b[s]) <= 1e-9 * max(1.0, abs(qty)), f"{what}: {s} {qty} != {b[s]}"


def marketable(symbol: str, side: Side) -> float:
    """A limit price 5% through the market: fills at once, but needs no price at the venue to be accepted."""
    return round(PRICES[symbol] * (1.05 if side is Side.BUY else 0.95), 2)


def _start(sup: Supervisor, client: redis.Redis, tmp_path: Path) -> AgentProcess:
    ex = sup.agent("execution", write_config(tmp_path / "execution.yaml"))
    ex.start()
    wait_running(client, ex)
    return ex


def test_orders_reach_the_venue_exactly_once_across_kill9(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """Marketable limit orders (5% through the market: they fill at once like market orders). Plain market
    orders cannot be used here: a restarted paper venue rejects them until its first tick (see
    test_market_order_sent_while_execution_was_down_fills)."""
    rng = random.Random(20261121)
    n, kills = 200, 5
    orders: list[NewOrder] = []
    for i in range(n):
        symbol = rng.choice(list(PRICES))
        lo, hi = QTY[symbol]
        side = rng.choice([Side.BUY, Side.SELL])
        orders.append(
            new_order(
                f"crashm{i:04d}",
                symbol,
                side,
                round(rng.uniform(lo, hi), 4),
                limit_price=marketable(symbol, side),
            )
        )
    by_id = {o.order.client_order_id: o.order for o in orders}

    with (
        sync_redis(redis_url) as client,
        Supervisor(redis_url, redis_prefix, tmp_path) as sup,
        TickFeeder(client, redis_prefix, PRICES, interval_s=0.02),
    ):
        ex = _start(sup, client, tmp_path)
        with OrderFeeder(client, redis_prefix, orders, interval_s=0.04, hold_back=40) as feeder:
            records = _kill_at_random_points(client, redis_prefix, ex, rng, kills)
            feeder.release()
            wait_until(lambda: feeder.done, 30, "all orders to be sent")
        wait_running(client, ex)
        final = _wait_final_reports(client, redis_prefix, n)
        ex.stop()

        venue = paper_orders(client, redis_prefix)
        fill_rows = paper_fill_rows(client, redis_prefix)
        fill_reports = _fill_reports(client, redis_prefix)
        rebuilt = _replay_event_log(client, redis_prefix)

    print("\nkills:", *records, sep="\n  ")
    assert len(records) >= 4 and all(r.at_venue < n for r in records), (
        f"kills must land while orders flow: {records}"
    )
    assert any(r.in_window for r in records), f"no kill left an unlogged or unacked order: {records}"

    # a final report per order, and it says filled with the whole quantity
    not_filled = {
        c: (r.status.value, r.reason) for c, r in final.items() if r.status is not OrderStatus.FILLED
    }
    assert not not_filled, f"orders not filled: {not_filled}"
    assert set(final) == set(by_id)
    for coid, r in final.items():
        assert abs(r.filled_quantity - by_id[coid].quantity) <= qty_tol(by_id[coid].quantity)

    # every client order id reached the venue exactly once, filled exactly its quantity
    assert set(venue) == set(by_id), f"venue misses {sorted(set(by_id) - set(venue))[:10]}"
    venue_fills = _check_fill_ids_consistent(
        [
            (r["fill_id"], (r["client_order_id"], r["symbol"], r["side"], r["quantity"], r["price"]))
            for r in fill_rows
        ],
        "venue fill list",
    )
    filled: dict[str, float] = defaultdict(float)
    for coid, _, _, qty, _ in venue_fills.values():
        filled[str(coid)] += float(qty)  # type: ignore[arg-type]
    for coid, spec in by_id.items():
        assert venue[coid]["status"] == "filled", f"{coid}: venue status {venue[coid]['status']}"
        assert abs(filled[coid] - spec.quantity) <= qty_tol(spec.quantity), f"{coid}: filled {filled[coid]}"

    # fill reports: no fill id with two contents; positions agree with the venue and with the orders
    reported = _check_fill_ids_consistent(
        [
            (r.fill_id or "", (r.client_order_id, r.symbol, r.side.value, r.last_quantity, r.last_price))
            for r in fill_reports
        ],
        "fill reports",
    )
    repeats = len(fill_reports) - len(reported)
    print(f"fill reports: {len(fill_reports)} for {len(reported)} fills ({repeats} identical repeats)")
    assert set(reported) == set(venue_fills), "every venue fill is reported, and nothing else"
    expected: dict[str, float] = defaultdict(float)
    for spec in by_id.values():
        expected[spec.symbol] += spec.side.sign * spec.quantity
    _assert_close(_positions(venue_fills), dict(expected), "venue positions vs orders")
    _assert_close(_positions(reported), _positions(venue_fills), "reported positions vs venue")

    # the event log still rebuilds every order to what the venue says (except those the known bug reordered)
    print(f"event log: {len(rebuilt.reordered)} orders written out of order (concurrent flush bug)")
    assert set(rebuilt.orders) | rebuilt.reordered == set(by_id)
    assert {c: o.status for c, o in rebuilt.orders.items() if o.status is not OrderStatus.FILLED} == {}


def test_resting_limit_orders_and_cancels_survive_kill9(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """Limit orders far from the market rest at the venue; a CancelOrder for each follows a few orders later
    on the same stream. Each order must be placed once, canceled once, never filled, and end canceled."""
    rng = random.Random(7)
    n, lag, kills = 200, 5, 4
    limits = [
        new_order(
            f"crashl{i:04d}",
            "BTC/USDT",
            Side.BUY if i % 2 else Side.SELL,
            0.01,
            limit_price=30_000.0 if i % 2 else 120_000.0,
        )
        for i in range(n)
    ]
    stream: list[NewOrder | CancelOrder] = []
    now_ns = time.time_ns()
    for i, o in enumerate(limits):
        stream.append(o)
        if i >= lag:
            stream.append(
                CancelOrder.create(
                    source="test",
                    ts_ns=now_ns,
                    client_order_id=limits[i - lag].order.client_order_id,
                    reason="crash test cancel",
                )
            )
    tail = [
        CancelOrder.create(
            source="test", ts_ns=now_ns, client_order_id=o.order.client_order_id, reason="tail"
        )
        for o in limits[n - lag :]
    ]
    ids = {o.order.client_order_id for o in limits}

    with (
        sync_redis(redis_url) as client,
        Supervisor(redis_url, redis_prefix, tmp_path) as sup,
        TickFeeder(client, redis_prefix, PRICES, interval_s=0.02),
    ):
        ex = _start(sup, client, tmp_path)
        with OrderFeeder(client, redis_prefix, stream, interval_s=0.03, hold_back=30) as feeder:
            records = _kill_at_random_points(client, redis_prefix, ex, rng, kills)
            feeder.release()
            wait_until(lambda: feeder.done, 30, "all commands to be sent")
        for c in tail:
            xadd(client, redis_prefix, Channel.ORDERS, c)
        wait_running(client, ex)
        final = _wait_final_reports(client, redis_prefix, n)
        ex.stop()
        venue = paper_orders(client, redis_prefix)
        fill_rows = paper_fill_rows(client, redis_prefix)
        reports = [
            m
            for m in read_stream(client, redis_prefix, Channel.EXECUTION_REPORTS)
            if isinstance(m, ExecutionReport)
        ]
        rebuilt = _replay_event_log(client, redis_prefix)

    print("\nkills:", *records, sep="\n  ")
    assert any(r.in_window for r in records), f"no kill left an unlogged or unacked command: {records}"
    assert set(venue) == ids
    assert {c: o["status"] for c, o in venue.items() if o["status"] != "canceled"} == {}
    assert fill_rows == [], "an order far from the market must never fill"
    assert {c: r.status.value for c, r in final.items() if r.status is not OrderStatus.CANCELED} == {}
    cancels: dict[str, int] = defaultdict(int)
    for r in reports:
        if r.kind == "cancel":
            cancels[r.client_order_id] += 1
    repeated = {c: k for c, k in cancels.items() if k != 1}
    assert set(repeated) <= rebuilt.reordered, (
        f"exactly one cancel report per order: {repeated}, reordered by the flush bug: {rebuilt.reordered}"
    )
    assert set(cancels) == ids
    print(f"event log: {len(rebuilt.reordered)} orders written out of order (concurrent flush bug)")
    assert {c: o.status for c, o in rebuilt.orders.items() if o.status is not OrderStatus.CANCELED} == {}
    assert set(rebuilt.orders) | rebuilt.reordered == ids


def test_market_order_sent_while_execution_was_down_fills(
    redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """A market order approved while execution is down must fill once execution is back and the market ticks,
    as it would on a real exchange, which has prices whether or not our execution process just restarted."""
    with sync_redis(redis_url) as client, Supervisor(redis_url, redis_prefix, tmp_path) as sup:
        ex = _start(sup, client, tmp_path)
        with TickFeeder(client, redis_prefix, PRICES, interval_s=0.02) as ticks:
            wait_until(lambda: ticks.sent >= 5, 10, "ticks")
            xadd(client, redis_prefix, Channel.ORDERS, new_order("before-crash", "BTC/USDT", Side.BUY, 0.01))
            first = _wait_final_reports(client, redis_prefix, 1)
        assert first["before-crash"].status is OrderStatus.FILLED  # the venue had prices before the crash
        ex.kill9()
        xadd(client, redis_prefix, Channel.ORDERS, new_order("while-down", "BTC/USDT", Side.BUY, 0.01))
        ex.start()
        wait_running(client, ex)
        time.sleep(1.0)  # a quiet market for a moment after the restart
        with TickFeeder(client, redis_prefix, PRICES, interval_s=0.02, seed=2):
            final = _wait_final_reports(client, redis_prefix, 2)
        ex.stop()
    r = final["while-down"]
    assert r.status is OrderStatus.FILLED, f"while-down: {r.status.value} ({r.reason})"

"""Pre-trade checks: one candidate order against a snapshot of the portfolio and the limits.

`evaluate` runs EVERY check and returns all denials, so an operator sees every reason at once. Each check is
a small pure function of a prepared `OrderContext` view and returns a `Denial` or None.

Worst-case projection: "position after" is the current position, plus our open orders on the candidate's side
in that symbol (they may all fill), plus the candidate. The same projected position feeds the per-symbol,
per-strategy, exposure, family, leverage and margin checks. Limits block orders that would exceed them and
grow the measure; an order that shrinks an over-limit position is never blocked by that limit.

Prices: the market mark of a symbol is its last price; for a limit order in a symbol without a usable last
price, the limit price stands in (the order is denied for missing market data anyway). The order's notional
is quantity x the higher of limit and last price (conservative). All notionals are in the account currency.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from wavesquant.risk.codes import Denial, DenialCode, money, num
from wavesquant.risk.exposure import MissingPrice, family_exposure, gross_exposure, net_exposure
from wavesquant.risk.limits import RiskLimits
from wavesquant.risk.open_orders import OpenOrders
from wavesquant.types import OrderType, Side, TradingState

RATE_WINDOW_MS = 1_000


@dataclass(frozen=True, slots=True)
class OrderCandidate:
    """An order a strategy wants, before risk has approved it."""

    client_order_id: str
    signal_id: str
    strategy_id: str
    family: str
    symbol: str
    side: Side
    quantity: float
    order_type: OrderType
    limit_price: float | None
    signal_ts_ms: int
    expires_at_ms: int | None = None
    reduce_only: bool = False

    @property
    def signed_quantity(self) -> float:
        return self.side.sign * self.quantity


@dataclass(frozen=True, slots=True)
class LastPrice:
    price: float
    ts_ms: int


@dataclass(frozen=True)
class RiskSnapshot:
    """What risk knows about the portfolio when it evaluates an order.

    positions: signed net quantity per symbol (whole portfolio).
    strategy_positions: signed quantity per (strategy_id, symbol).
    strategy_families: strategy_id -> family, to add up family budgets (the candidate's own family is taken
        from the candidate).
    available_margin / account_leverage: optional venue margin info; the margin check runs only when
        available_margin is given.
    """

    equity: float
    positions: Mapping[str, float] = field(default_factory=dict)
    strategy_positions: Mapping[tuple[str, str], float] = field(default_factory=dict)
    last_prices: Mapping[str, LastPrice] = field(default_factory=dict)
    open_orders: OpenOrders = field(default_factory=OpenOrders)  # a plain sequence is indexed on creation
    trading_state: TradingState = TradingState.ACTIVE
    strategy_families: Mapping[str, str] = field(default_factory=dict)
    available_margin: float | None = None
    account_leverage: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.open_orders, OpenOrders):
            object.__setattr__(self, "open_orders", OpenOrders(self.open_orders))  # type: ignore[arg-type]
        if not (math.isfinite(self.account_leverage) and self.account_leverage > 0.0):
            raise ValueError(f"account_leverage must be positive, got {self.account_leverage}")


@dataclass(frozen=True, slots=True)
class RecentOrder:
    ts_ms: int
    client_order_id: str
    strategy_id: str
    symbol: str
    side: Side
    quantity: float


class OrderRateLimiter:
    """Recently approved orders, for the order-rate and duplicate checks. Owned by the caller.

    `evaluate` only reads it; the caller must `record` every order it approves (and sends). Orders older than
    `retain_ms` before the newest record are dropped, so `retain_ms` must cover the duplicate window.
    """

    def __init__(self, retain_ms: int = 60_000) -> None:
        if retain_ms < RATE_WINDOW_MS:
            raise ValueError(f"retain_ms must be at least {RATE_WINDOW_MS}")
        self.retain_ms = retain_ms
        self._orders: deque[RecentOrder] = deque()
        self._ids: Counter[str] = Counter()

    def record(self, candidate: OrderCandidate, ts_ms: int) -> None:
        self._orders.append(
            RecentOrder(
                ts_ms,
                candidate.client_order_id,
                candidate.strategy_id,
                candidate.symbol,
                candidate.side,
                candidate.quantity,
            )
        )
        self._ids[candidate.client_order_id] += 1
        horizon = ts_ms - self.retain_ms
        while self._orders and self._orders[0].ts_ms <= horizon:
            old = self._orders.popleft()
            self._ids[old.client_order_id] -= 1
            if self._ids[old.client_order_id] <= 0:
                del self._ids[old.client_order_id]

    def since(self, since_ms: int) -> Iterator[RecentOrder]:
        """Recorded orders with ts_ms > since_ms, newest first (walks back from the recent end only)."""
        return itertools.takewhile(lambda o: o.ts_ms > since_ms, reversed(self._orders))

    def count_since(self, since_ms: int) -> int:
        """Orders with ts_ms > since_ms (binary search over the time-ordered record)."""
        orders = self._orders
        lo, hi = 0, len(orders)
        while lo < hi:
            mid = (lo + hi) // 2
            if orders[mid].ts_ms > since_ms:
                hi = mid
            else:
                lo = mid + 1
        return len(orders) - lo

    def has_client_order_id(self, client_order_id: str) -> bool:
        return client_order_id in self._ids


@dataclass(frozen=True, slots=True)
class RiskVerdict:
    approved: bool
    denials: tuple[Denial, ...] = ()

    @property
    def codes(self) -> frozenset[DenialCode]:
        return frozenset(d.code for d in self.denials)


def is_reducing(side: Side, qty: float, position: float) -> bool:
    """True if trading `qty` on `side` shrinks |position| without flipping it through zero."""
    if not (qty > 0.0) or position == 0.0 or side.sign * position > 0.0:
        return False
    return qty <= abs(position) or math.isclose(qty, abs(position), rel_tol=1e-9)


@dataclass(frozen=True, slots=True)
class OrderContext:
    """The candidate with everything the checks share, computed once."""

    c: OrderCandidate
    snap: RiskSnapshot
    limits: RiskLimits
    now_ms: int
    rates: OrderRateLimiter
    last: LastPrice | None  # usable (finite, positive) last price of the candidate's symbol
    mark: float | None  # last price, else limit price
    notional: float | None
    pos_before: float  # symbol position + our open same-side orders
    pos_after: float
    strat_before: float  # strategy's position in the symbol + its open same-side orders
    strat_after: float
    marks: Mapping[str, float]
    unpriced: tuple[str, ...]  # held symbols (other than the candidate's) without a mark price

    @property
    def increases(self) -> bool:
        return abs(self.pos_after) > abs(self.pos_before)


def exceeds(value: float, limit: float) -> bool:
    """value > limit, ignoring float noise (0.1 + 0.2 does not exceed 0.3)."""
    return value > limit and not math.isclose(value, limit, rel_tol=1e-9)


def _valid_price(p: float | None) -> bool:
    return p is not None and math.isfinite(p) and p > 0.0


def prepare(
    c: OrderCandidate, snap: RiskSnapshot, limits: RiskLimits, now_ms: int, rates: OrderRateLimiter
) -> OrderContext:
    """Compute once what the checks share (prices, notional, projected positions)."""
    lp = snap.last_prices.get(c.symbol)
    last = lp if lp is not None and _valid_price(lp.price) else None
    limit = c.limit_price if c.order_type is OrderType.LIMIT and _valid_price(c.limit_price) else None
    mark = last.price if last is not None else limit
    known = [p for p in (limit, last.price if last is not None else None) if p is not None]
    notional = c.quantity * max(known) if known else None

    working = snap.open_orders
    pending = c.side.sign * working.pending(c.symbol, c.side)
    strat_pending = c.side.sign * working.pending(c.symbol, c.side, c.strategy_id)
    pos_before = snap.positions.get(c.symbol, 0.0) + pending
    strat_before = snap.strategy_positions.get((c.strategy_id, c.symbol), 0.0) + strat_pending

    marks = {s: p.price for s, p in snap.last_prices.items() if _valid_price(p.price)}
    if mark is not None:
        marks[c.symbol] = mark
    held = {s for s, q in snap.positions.items() if q != 0.0}
    held |= {s for (_, s), q in snap.strategy_positions.items() if q != 0.0}
    unpriced = tuple(sorted(s for s in held if s not in marks and s != c.symbol))

    return OrderContext(
        c=c,
        snap=snap,
        limits=limits,
        now_ms=now_ms,
        rates=rates,
        last=last,
        mark=mark,
        notional=notional,
        pos_before=pos_before,
        pos_after=pos_before + c.signed_quantity,
        strat_before=strat_before,
        strat_after=strat_before + c.signed_quantity,
        marks=marks,
        unpriced=unpriced,
    )


# --- the checks ---------------------------------------------------------------------------------------------


def check_invalid_order(o: OrderContext) -> Denial | None:
    c = o.c
    problems: list[str] = []
    if not c.client_order_id or not c.strategy_id or not c.symbol:
        problems.append("client_order_id, strategy_id and symbol are required")
    if not (math.isfinite(c.quantity) and c.quantity > 0.0):
        problems.append(f"quantity {num(c.quantity)} must be positive")
    if c.order_type is OrderType.LIMIT and not _valid_price(c.limit_price):
        problems.append(f"limit order needs a positive limit price, got {c.limit_price}")
    if c.reduce_only and not is_reducing(c.side, c.quantity, o.pos_before):
        problems.append(
            f"reduce_only {c.side} {num(c.quantity)} would not reduce position {num(o.pos_before)}"
        )
    if not problems:
        return None
    return Denial(DenialCode.INVALID_ORDER, f"{'; '.join(problems)} ({c.client_order_id or '?'})")


def check_trading_state(o: OrderContext) -> Denial | None:
    state = o.snap.trading_state
    if state is TradingState.HALTED:
        return Denial(DenialCode.KILL_SWITCH, "trading is halted: no orders accepted")
    if state is TradingState.REDUCING and not is_reducing(o.c.side, o.c.quantity, o.pos_before):
        return Denial(
            DenialCode.REDUCING_ONLY,
            f"trading is reducing-only: {o.c.side} {num(o.c.quantity)} {o.c.symbol} "
            f"does not reduce position {num(o.pos_before)}",
        )
    return None


def check_expired_signal(o: OrderContext) -> Denial | None:
    exp = o.c.expires_at_ms
    if exp is not None and o.now_ms >= exp:
        return Denial(
            DenialCode.EXPIRED_SIGNAL,
            f"signal {o.c.signal_id} expired at {exp} ms, now {o.now_ms} ms ({o.now_ms - exp:,} ms ago)",
        )
    return None


def check_stale_signal(o: OrderContext) -> Denial | None:
    age = o.now_ms - o.c.signal_ts_ms
    if age > o.limits.max_signal_age_ms:
        return Denial(
            DenialCode.STALE_SIGNAL,
            f"signal {o.c.signal_id} is {age:,} ms old > max {o.limits.max_signal_age_ms:,} ms",
        )
    return None


def check_market_data(o: OrderContext) -> Denial | None:
    """The candidate's own symbol needs a usable, fresh last price."""
    if o.last is None:
        return Denial(DenialCode.NO_MARKET_DATA, f"no usable last price for {o.c.symbol}")
    age = o.now_ms - o.last.ts_ms
    if age > o.limits.max_market_data_age_ms:
        return Denial(
            DenialCode.STALE_MARKET_DATA,
            f"last price for {o.c.symbol} is {age:,} ms old > max {o.limits.max_market_data_age_ms:,} ms",
        )
    return None


def check_portfolio_marks(o: OrderContext) -> Denial | None:
    """Exposure cannot be known without prices for every held symbol; only reductions may pass then."""
    if o.unpriced and o.increases:
        return Denial(
            DenialCode.NO_MARKET_DATA,
            f"no price for held {', '.join(o.unpriced)}: portfolio exposure unknown",
        )
    return None


def check_order_size(o: OrderContext) -> Denial | None:
    limit = o.limits.order_qty_limit(o.c.symbol)
    if limit is not None and exceeds(o.c.quantity, limit):
        return Denial(
            DenialCode.ORDER_SIZE, f"quantity {num(o.c.quantity)} > max {num(limit)} for {o.c.symbol}"
        )
    return None


def check_notional(o: OrderContext) -> Denial | None:
    limit = o.limits.max_order_notional
    if o.notional is not None and exceeds(o.notional, limit):
        return Denial(
            DenialCode.NOTIONAL, f"notional {money(o.notional)} > max {money(limit)} for {o.c.symbol}"
        )
    return None


def check_price_band(o: OrderContext) -> Denial | None:
    """A limit price too far from the last price is a fat finger (a market order trades at the last price)."""
    price = o.c.limit_price
    if o.c.order_type is not OrderType.LIMIT or o.last is None or price is None or not _valid_price(price):
        return None
    last = o.last.price
    deviation_pct = abs(price - last) / last * 100.0
    band = o.limits.price_band_pct
    if exceeds(deviation_pct, band):
        return Denial(
            DenialCode.PRICE_BAND,
            f"limit price {num(price)} is {deviation_pct:.2f}% from last {num(last)} "
            f"> band {band:.2f}% for {o.c.symbol}",
        )
    return None


def check_symbol_position(o: OrderContext) -> Denial | None:
    limit = o.limits.position_qty_limit(o.c.symbol)
    if limit is not None and exceeds(abs(o.pos_after), limit) and o.increases:
        return Denial(
            DenialCode.POSITION_SYMBOL,
            f"position after fill {num(o.pos_after)} > max {num(limit)} for {o.c.symbol} "
            f"(incl. open orders: {num(o.pos_before)})",
        )
    return None


def check_strategy_position(o: OrderContext) -> Denial | None:
    if o.mark is None:
        return None
    before = abs(o.strat_before) * o.mark
    after = abs(o.strat_after) * o.mark
    limit = o.limits.max_position_per_strategy
    if exceeds(after, limit) and after > before:
        return Denial(
            DenialCode.POSITION_STRATEGY,
            f"strategy {o.c.strategy_id} position after fill {money(after)} > max {money(limit)} "
            f"for {o.c.symbol}",
        )
    return None


def _portfolio(o: OrderContext, symbol_position: float) -> dict[str, float]:
    positions = dict(o.snap.positions)
    positions[o.c.symbol] = symbol_position
    return positions


def _gross(o: OrderContext) -> tuple[float, float] | None:
    """Gross exposure (before, after), or None when it cannot be valued."""
    try:
        return (
            gross_exposure(_portfolio(o, o.pos_before), o.marks),
            gross_exposure(_portfolio(o, o.pos_after), o.marks),
        )
    except MissingPrice:
        return None


def check_gross_exposure(o: OrderContext) -> Denial | None:
    gross = _gross(o)
    limit = o.limits.max_gross_exposure
    if gross is not None and exceeds(gross[1], limit) and gross[1] > gross[0]:
        return Denial(
            DenialCode.GROSS_EXPOSURE, f"gross exposure after fill {money(gross[1])} > max {money(limit)}"
        )
    return None


def check_net_exposure(o: OrderContext) -> Denial | None:
    try:
        before = net_exposure(_portfolio(o, o.pos_before), o.marks)
        after = net_exposure(_portfolio(o, o.pos_after), o.marks)
    except MissingPrice:
        return None
    limit = o.limits.max_net_exposure
    if exceeds(abs(after), limit) and abs(after) > abs(before):
        return Denial(
            DenialCode.NET_EXPOSURE, f"net exposure after fill {money(after)} beyond ±{money(limit)}"
        )
    return None


def check_family_budget(o: OrderContext) -> Denial | None:
    budget = o.limits.family_budgets.get(o.c.family)
    if budget is None:
        return None
    families = dict(o.snap.strategy_families)
    families[o.c.strategy_id] = o.c.family
    key = (o.c.strategy_id, o.c.symbol)

    def used(strategy_position: float) -> float:
        positions = dict(o.snap.strategy_positions)
        positions[key] = strategy_position
        return family_exposure(positions, families, o.marks).get(o.c.family, 0.0)

    try:
        before, after = used(o.strat_before), used(o.strat_after)
    except MissingPrice:
        return None
    if exceeds(after, budget) and after > before:
        return Denial(
            DenialCode.FAMILY_BUDGET,
            f"family {o.c.family} notional after fill {money(after)} > budget {money(budget)}",
        )
    return None


def check_leverage(o: OrderContext) -> Denial | None:
    gross = _gross(o)
    if gross is None or not gross[1] > gross[0]:
        return None
    equity = o.snap.equity
    if not (equity > 0.0):
        return Denial(DenialCode.LEVERAGE, f"equity {money(equity)} <= 0: leverage unbounded")
    leverage = gross[1] / equity
    limit = o.limits.max_leverage
    if exceeds(leverage, limit):
        return Denial(
            DenialCode.LEVERAGE,
            f"leverage after fill {leverage:.2f}x > max {limit:.2f}x "
            f"(gross {money(gross[1])} / equity {money(equity)})",
        )
    return None


def check_margin(o: OrderContext) -> Denial | None:
    available = o.snap.available_margin
    if available is None or o.notional is None or not o.increases:
        return None
    required = o.notional / o.snap.account_leverage
    if exceeds(required, available):
        return Denial(
            DenialCode.MARGIN,
            f"margin required {money(required)} > available {money(available)} "
            f"at {o.snap.account_leverage:g}x for {o.c.symbol}",
        )
    return None


def check_order_rate(o: OrderContext) -> Denial | None:
    count = o.rates.count_since(o.now_ms - RATE_WINDOW_MS) + 1
    limit = o.limits.max_orders_per_second
    if count > limit:
        return Denial(
            DenialCode.ORDER_RATE, f"order rate {count} in last {RATE_WINDOW_MS:,} ms > max {limit}/s"
        )
    return None


def check_duplicate(o: OrderContext) -> Denial | None:
    c = o.c
    if o.rates.has_client_order_id(c.client_order_id) or c.client_order_id in o.snap.open_orders:
        return Denial(DenialCode.DUPLICATE_ORDER, f"client_order_id {c.client_order_id} already used")
    window = o.limits.duplicate_window_ms
    if window == 0:
        return None
    for r in o.rates.since(o.now_ms - window):
        if (
            r.strategy_id == c.strategy_id
            and r.symbol == c.symbol
            and r.side is c.side
            and math.isclose(r.quantity, c.quantity, rel_tol=1e-9)
        ):
            return Denial(
                DenialCode.DUPLICATE_ORDER,
                f"same {c.strategy_id} {c.side} {num(c.quantity)} {c.symbol} as {r.client_order_id} "
                f"{o.now_ms - r.ts_ms:,} ms ago (window {window:,} ms)",
            )
    return None


def check_self_trade(o: OrderContext) -> Denial | None:
    """Our own resting order on the other side that this order would trade against."""
    c = o.c
    limit = c.limit_price if c.order_type is OrderType.LIMIT else None
    x = o.snap.open_orders.crossing(c.symbol, c.side, limit)
    if x is None:
        return None
    theirs = "market" if limit is None else f"@ {num(limit)}"
    return Denial(
        DenialCode.SELF_TRADE,
        f"{c.side} {theirs} would cross our open {x.side} {x.client_order_id} @ {num(x.price or 0.0)} for {c.symbol}",
    )


CHECKS = (
    check_invalid_order,
    check_trading_state,
    check_expired_signal,
    check_stale_signal,
    check_market_data,
    check_portfolio_marks,
    check_order_size,
    check_notional,
    check_price_band,
    check_symbol_position,
    check_strategy_position,
    check_gross_exposure,
    check_net_exposure,
    check_family_budget,
    check_leverage,
    check_margin,
    check_order_rate,
    check_duplicate,
    check_self_trade,
)


def evaluate(
    candidate: OrderCandidate,
    snapshot: RiskSnapshot,
    limits: RiskLimits,
    now_ms: int,
    rate_state: OrderRateLimiter,
) -> RiskVerdict:
    """Run every check and collect every denial. Pure: `rate_state` is read, never written."""
    order = prepare(candidate, snapshot, limits, now_ms, rate_state)
    denials = tuple(d for check in CHECKS if (d := check(order)) is not None)
    return RiskVerdict(approved=not denials, denials=denials)

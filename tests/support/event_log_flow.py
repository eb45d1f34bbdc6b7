"""Event-log messages made by hand, in the format execution and core write them (see agents/execution and
agents/core): an order's first transition carries its request, every state-machine event is a transition
(some with an execution report), and core writes one event per signal state change. Each message is 1 ms
after the previous one."""

from __future__ import annotations

from wavesquant.execution.orders import FillEvent, Order, OrderEvent, request_to_dict
from wavesquant.execution.reports import report_fields
from wavesquant.execution.venues.base import Fill, OrderRequest
from wavesquant.messages import Envelope, ExecutionReport, OrderTransition, SignalEvent
from wavesquant.messages.orders import ReportKind
from wavesquant.types import Liquidity, OrderType, Side, SignalState

T0 = 1_700_000_000_000


class EventLogFlow:
    def __init__(self, t0_ms: int = T0) -> None:
        self.msgs: list[Envelope] = []
        self.now = t0_ms
        self.meta: dict[str, tuple[str, str]] = {}  # client order id -> (strategy, signal)

    def _msg(self, cls: type[Envelope], source: str = "execution", **fields: object) -> Envelope:
        self.now += 1
        return cls.create(source=source, ts_ns=self.now * 1_000_000, **fields)

    def new(self, coid: str, side: Side = Side.BUY, qty: float = 1.0, strategy: str = "trend_a", *,
            symbol: str = "BTC/USDT", signal: str = "sig-1", limit: float | None = None) -> Order:
        req = OrderRequest(coid, symbol, side, OrderType.LIMIT if limit else OrderType.MARKET, qty, limit,
                           strategy_id=strategy, ts_ms=self.now)
        self.meta[coid] = (strategy, signal)
        self.msgs.append(self._msg(OrderTransition, client_order_id=coid, request=request_to_dict(req),
                                   strategy_id=strategy, signal_id=signal))
        return Order(request=req, created_ts_ms=self.now)

    def apply(self, order: Order, event: OrderEvent, report: ReportKind | None = None) -> None:
        t = order.apply(event, self.now + 1)
        assert t is not None
        strategy, signal = self.meta[order.client_order_id]
        self.msgs.append(self._msg(OrderTransition, client_order_id=order.client_order_id, transitions=[t.to_dict()],
                                   strategy_id=strategy, signal_id=signal))
        if report is not None:
            fill = event.fill if isinstance(event, FillEvent) else None
            self.msgs.append(self._msg(ExecutionReport, **report_fields(order, report, "paper", fill),
                                       signal_id=signal, strategy_id=strategy))

    def fill(self, order: Order, fill_id: str, qty: float, price: float, fee: float = 0.0) -> None:
        f = Fill(order.client_order_id, order.venue_order_id or "", fill_id, order.symbol, order.side, qty, price,
                 fee, "USDT", Liquidity.TAKER, self.now)
        self.apply(order, FillEvent(f), "fill")

    def signal(self, sid: str, *states: SignalState, strategy: str = "trend_a") -> None:
        """One signal_event entry stepping through `states`, each from the one before (the first from none)."""
        steps, prev = [], None
        for state in states:
            steps.append({"signal_id": sid, "signal_type": "trend_signal", "strategy_id": strategy,
                          "symbol": "BTC/USDT", "from_state": prev, "to_state": state, "ts_ms": self.now + 1,
                          "reason": f"to {state.value}"})
            prev = state
        self.msgs.append(self._msg(SignalEvent, source="core", steps=steps))

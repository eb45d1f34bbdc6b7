"""Pure translations between ccxt's unified structures and the venue types.

ccxt order statuses map as: ``open`` -> OPEN (PARTIALLY_FILLED once something filled), ``closed`` -> FILLED,
``canceled``/``cancelled``/``expired`` -> CANCELED (the filled part stays in `filled_quantity`),
``rejected`` -> FAILED. A missing status (some exchanges answer create_order with an id only) means the venue
acknowledged the order, so it is OPEN.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wavesquant.execution.venues.base import Fill, OrderRequest, VenueOrder
from wavesquant.types import Liquidity, OrderStatus, OrderType, Side, TimeInForce

_STATUS = {
    "open": OrderStatus.OPEN,
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "cancelled": OrderStatus.CANCELED,
    "expired": OrderStatus.CANCELED,
    "rejected": OrderStatus.FAILED,
}

# Param name under which create_order sends our client order id. ccxt's unified "clientOrderId" works for
# most exchanges; Binance's own name is "newClientOrderId" (ccxt accepts both).
CLIENT_ID_PARAM = {
    "binance": "newClientOrderId",
    "binanceusdm": "newClientOrderId",
    "binancecoinm": "newClientOrderId",
}
DEFAULT_CLIENT_ID_PARAM = "clientOrderId"

_TIF = {TimeInForce.GTC: "GTC", TimeInForce.IOC: "IOC", TimeInForce.FOK: "FOK"}


class UnknownOrderStatus(ValueError):
    """ccxt reported a status this module does not know; refusing to guess with real money."""


def _float(value: Any, default: float = 0.0) -> float:
    return default if value is None else float(value)


def order_status(ccxt_status: str | None, filled: float) -> OrderStatus:
    if ccxt_status is None:
        return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.OPEN
    try:
        status = _STATUS[ccxt_status.lower()]
    except KeyError:
        raise UnknownOrderStatus(f"unknown ccxt order status {ccxt_status!r}") from None
    if status is OrderStatus.OPEN and filled > 0:
        return OrderStatus.PARTIALLY_FILLED
    return status


def order_type(ccxt_type: str | None, price: float | None) -> OrderType:
    """market/limit map directly; exotic types (stop-loss, trailing, ...) count as limit when priced."""
    if ccxt_type == "market":
        return OrderType.MARKET
    if ccxt_type == "limit":
        return OrderType.LIMIT
    return OrderType.LIMIT if price is not None else OrderType.MARKET


def fee_total(fee: Mapping[str, Any] | None, fees: Iterable[Mapping[str, Any]] | None) -> tuple[float, str]:
    """Sum of fee costs in the first fee currency, and that currency ("" when no fee was reported).

    Fees in other currencies are not added (they cannot be summed without a price); callers that need them
    read the order's fills, which carry their own currency.
    """
    entries = [f for f in (fees or []) if f and f.get("cost") is not None]
    if not entries and fee and fee.get("cost") is not None:
        entries = [fee]
    if not entries:
        return 0.0, ""
    currency = str(entries[0].get("currency") or "")
    total = sum(float(f["cost"]) for f in entries if str(f.get("currency") or "") == currency)
    return total, currency


def ccxt_trade_to_fill(trade: Mapping[str, Any], client_order_id: str = "") -> Fill:
    """One ccxt trade -> Fill. A trade without maker/taker info counts as taker (the costlier assumption)."""
    fee_cost, fee_currency = fee_total(trade.get("fee"), trade.get("fees"))
    liquidity = Liquidity.MAKER if trade.get("takerOrMaker") == "maker" else Liquidity.TAKER
    return Fill(
        client_order_id=client_order_id,
        venue_order_id=str(trade.get("order") or ""),
        fill_id=str(trade["id"]),
        symbol=str(trade["symbol"]),
        side=Side(trade["side"]),
        quantity=_float(trade.get("amount")),
        price=_float(trade.get("price")),
        fee=fee_cost,
        fee_currency=fee_currency,
        liquidity=liquidity,
        ts_ms=int(trade.get("timestamp") or 0),
    )


def ccxt_order_to_venue_order(
    order: Mapping[str, Any],
    *,
    client_order_id: str | None = None,
    request: OrderRequest | None = None,
) -> VenueOrder:
    """One ccxt order -> VenueOrder.

    `client_order_id` overrides the order's own (Binance's cancel answer carries a new cancel id in
    clientOrderId). `request` fills fields a sparse create answer leaves out (Kraken returns only the id).
    """
    filled = _float(order.get("filled"))
    price = order.get("price")
    limit_price = float(price) if price is not None else (request.limit_price if request else None)
    amount = order.get("amount")
    quantity = float(amount) if amount is not None else (request.quantity if request else 0.0)
    side_raw = order.get("side") or (request.side.value if request else None)
    if side_raw is None:
        raise ValueError(f"order {order.get('id')} has no side")
    if order.get("type") is None and request is not None:
        kind = request.type
    else:
        kind = order_type(order.get("type"), limit_price)
    if kind is OrderType.MARKET:
        # ccxt reports the average execution price as `price` of filled market orders; it was no limit.
        limit_price = None
    cid = client_order_id if client_order_id is not None else order.get("clientOrderId")
    if cid is None and request is not None:
        cid = request.client_order_id
    fees, _ = fee_total(order.get("fee"), order.get("fees"))
    # Some exchanges list only trade ids in an order (Kraken); only complete trades become fills.
    fills = tuple(
        ccxt_trade_to_fill(t, str(cid or ""))
        for t in (order.get("trades") or [])
        if t.get("id") and t.get("side") and t.get("amount") is not None and t.get("price") is not None
    )
    symbol = order.get("symbol") or (request.symbol if request else "")
    average = order.get("average")
    return VenueOrder(
        client_order_id=str(cid or ""),
        venue_order_id=str(order.get("id") or ""),
        symbol=str(symbol),
        side=Side(side_raw),
        type=kind,
        quantity=quantity,
        limit_price=limit_price,
        status=order_status(order.get("status"), filled),
        filled_quantity=filled,
        average_price=float(average) if average is not None else None,
        fees=fees,
        ts_ms=int(
            order.get("lastUpdateTimestamp") or order.get("timestamp") or (request.ts_ms if request else 0)
        ),
        fills=fills,
    )


@dataclass(frozen=True, slots=True)
class CreateOrderArgs:
    """Positional arguments and params of ccxt's create_order."""

    symbol: str
    type: str
    side: str
    amount: float
    price: float | None
    params: dict[str, Any] = field(default_factory=dict)


def order_request_to_ccxt(request: OrderRequest, exchange_id: str) -> CreateOrderArgs:
    """OrderRequest -> create_order arguments, with our client order id under the exchange's param name."""
    if request.quantity <= 0:
        raise ValueError(f"quantity must be positive, got {request.quantity}")
    id_param = CLIENT_ID_PARAM.get(exchange_id, DEFAULT_CLIENT_ID_PARAM)
    params: dict[str, Any] = {id_param: request.client_order_id}
    price: float | None = None
    if request.type is OrderType.LIMIT:
        if request.limit_price is None or request.limit_price <= 0:
            raise ValueError(f"limit order {request.client_order_id} needs a positive limit_price")
        price = request.limit_price
        if request.time_in_force is TimeInForce.POST_ONLY:
            params["postOnly"] = True
        else:
            params["timeInForce"] = _TIF[request.time_in_force]
    elif request.time_in_force in (TimeInForce.POST_ONLY,):
        raise ValueError("a market order cannot be post-only")
    if request.reduce_only:
        params["reduceOnly"] = True
    return CreateOrderArgs(
        symbol=request.symbol,
        type=request.type.value,
        side=request.side.value,
        amount=request.quantity,
        price=price,
        params=params,
    )


def balances_total(balance: Mapping[str, Any]) -> dict[str, float]:
    """ccxt balance structure -> total per currency (currencies without a total are left out)."""
    total = balance.get("total") or {}
    return {str(code): float(value) for code, value in total.items() if value is not None}


def positions_net(positions: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """ccxt positions -> signed net size per symbol (contracts x contract size; short is negative)."""
    net: dict[str, float] = {}
    for pos in positions:
        contracts = _float(pos.get("contracts"))
        if contracts == 0:
            continue
        size = contracts * _float(pos.get("contractSize"), 1.0)
        sign = -1.0 if pos.get("side") == "short" else 1.0
        symbol = str(pos["symbol"])
        net[symbol] = net.get(symbol, 0.0) + sign * abs(size)
    return net

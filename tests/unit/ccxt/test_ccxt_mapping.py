"""Mapping tests on REAL recorded exchange responses, parsed by ccxt's own parsers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ccxt
import pytest

from support.loopback_exchange import ExchangeFixtures, load_fixture_markets
from wavesquant.execution.venues.base import OrderRequest
from wavesquant.execution.venues.ccxt_mapping import (
    UnknownOrderStatus,
    balances_total,
    ccxt_order_to_venue_order,
    ccxt_trade_to_fill,
    fee_total,
    order_request_to_ccxt,
    order_status,
    positions_net,
)
from wavesquant.types import Liquidity, OrderStatus, OrderType, Side, TimeInForce


@pytest.fixture
def binance(shared_data: Path) -> tuple[Any, ExchangeFixtures]:
    fx = ExchangeFixtures(shared_data / "ccxt_static", "binance")
    exchange = ccxt.binance()
    load_fixture_markets(exchange, fx)
    return exchange, fx


@pytest.fixture
def kraken(shared_data: Path) -> tuple[Any, ExchangeFixtures]:
    fx = ExchangeFixtures(shared_data / "ccxt_static", "kraken")
    exchange = ccxt.kraken()
    load_fixture_markets(exchange, fx)
    return exchange, fx


def _recorded_parsed(fx: ExchangeFixtures, method: str, description: str) -> Any:
    return next(c["parsedResponse"] for c in fx.response_cases(method) if c["description"] == description)


def test_binance_filled_market_order(binance: tuple[Any, ExchangeFixtures]) -> None:
    exchange, fx = binance
    raw = fx.response("fetchOrder", "Fetch spot closed order")
    parsed = exchange.parse_order(raw, exchange.market("LTC/USDT"))
    recorded = _recorded_parsed(fx, "fetchOrder", "Fetch spot closed order")
    for key in ("id", "clientOrderId", "status", "filled", "average", "amount", "side", "type"):
        assert parsed[key] == recorded[key]
    order = ccxt_order_to_venue_order(parsed)
    assert order.status is OrderStatus.FILLED
    assert order.venue_order_id == "3397148653"
    assert order.client_order_id == "x-R4BD3S825806ed40c861260428a48c"
    assert (order.side, order.type) == (Side.SELL, OrderType.MARKET)
    assert order.limit_price is None  # ccxt reports the average as `price` of a market order
    assert order.quantity == pytest.approx(0.1) and order.filled_quantity == pytest.approx(0.1)
    assert order.average_price == pytest.approx(90.8)
    assert order.remaining == 0.0
    assert order.ts_ms == 1679571174472


def test_binance_open_and_canceled_orders(binance: tuple[Any, ExchangeFixtures]) -> None:
    exchange, fx = binance
    market = exchange.market("LTC/USDT")
    (open_order,) = exchange.parse_orders(fx.response("fetchOpenOrders", "Fetch spot open orders"), market)
    mapped = ccxt_order_to_venue_order(open_order)
    assert mapped.status is OrderStatus.OPEN  # LIMIT_MAKER is a limit order in ccxt
    assert (mapped.type, mapped.limit_price, mapped.quantity) == (OrderType.LIMIT, 50.0, 0.2)
    (canceled,) = exchange.parse_orders(fx.response("fetchOrders", "fetch spot orders"), market)
    assert ccxt_order_to_venue_order(canceled).status is OrderStatus.CANCELED


def test_binance_create_answer_and_client_id_override(binance: tuple[Any, ExchangeFixtures]) -> None:
    _, fx = binance
    parsed = _recorded_parsed(fx, "createOrder", "spot +selfTradePrevention +iceberg")
    order = ccxt_order_to_venue_order(parsed, client_order_id="ours-1")
    assert order.client_order_id == "ours-1"
    assert (order.symbol, order.status, order.limit_price, order.quantity) == ("SOL/USDT", OrderStatus.OPEN, 241.0, 0.05)


def test_binance_trade_to_fill(binance: tuple[Any, ExchangeFixtures]) -> None:
    exchange, fx = binance
    (trade,) = exchange.parse_trades(fx.response("fetchMyTrades", "Spot private trade"), exchange.market("LTC/USDT"))
    fill = ccxt_trade_to_fill(trade, "cid-7")
    assert fill.fill_id == "309520010" and fill.venue_order_id == "3784695242"
    assert (fill.client_order_id, fill.symbol, fill.side) == ("cid-7", "LTC/USDT", Side.SELL)
    assert (fill.quantity, fill.price) == (pytest.approx(0.2), pytest.approx(69.63))
    assert (fill.fee, fill.fee_currency, fill.liquidity) == (pytest.approx(0.013926), "USDT", Liquidity.TAKER)
    assert fill.ts_ms == 1698138992358


def test_binance_balances_and_positions(binance: tuple[Any, ExchangeFixtures]) -> None:
    exchange, fx = binance
    balance = exchange.parse_balance_custom(fx.response("fetchBalance", "Spot balance"), "spot")
    assert balances_total(balance) == {"BTC": 0.0, "LTC": pytest.approx(0.919741), "ETH": pytest.approx(0.02229833)}
    linear = _recorded_parsed(fx, "fetchPositions", "Fetch linear positions without symbols")
    assert positions_net(linear) == {"BTC/USDT:USDT": pytest.approx(0.009)}
    inverse = _recorded_parsed(fx, "fetchPositions", "inverse positions")
    assert positions_net(inverse) == {"BTC/USD:BTC": pytest.approx(-300.0)}  # 3 contracts x 100 USD, short


def test_kraken_orders(kraken: tuple[Any, ExchangeFixtures]) -> None:
    exchange, fx = kraken
    closed = fx.response("fetchOrder", "closed market order")["result"]
    (oid, body), = closed.items()
    parsed = exchange.parse_order(exchange.extend(body, {"id": oid}))
    order = ccxt_order_to_venue_order(parsed)
    assert (order.status, order.type, order.filled_quantity) == (OrderStatus.FILLED, OrderType.MARKET, 0.1)
    assert order.fees == pytest.approx(0.018475)
    assert order.average_price == pytest.approx(71.05741)

    stop = _recorded_parsed(fx, "fetchOpenOrders", "open stop-loss-limit order")[0]
    mapped = ccxt_order_to_venue_order(stop)
    assert (mapped.status, mapped.type, mapped.limit_price, mapped.side) == (OrderStatus.OPEN, OrderType.LIMIT, 54.0, Side.SELL)

    # Kraken answers create_order with the id only: the request fills the gaps.
    sparse = _recorded_parsed(fx, "createOrder", "create order")
    request = OrderRequest("k-1", "LTC/USDT", Side.BUY, OrderType.MARKET, 0.1, ts_ms=5)
    created = ccxt_order_to_venue_order(sparse, request=request)
    assert (created.venue_order_id, created.client_order_id, created.status) == ("OL7LNO-R4SAD-6UINEU", "k-1", OrderStatus.OPEN)
    assert created.quantity == 0.1 and created.ts_ms == 5

    positions = _recorded_parsed(fx, "fetchPositions", "fetchPositions")
    assert positions_net(positions) == {"ADA/USDT": pytest.approx(-10.0)}


@pytest.mark.parametrize(
    ("status", "filled", "expected"),
    [
        ("open", 0.0, OrderStatus.OPEN),
        ("open", 0.5, OrderStatus.PARTIALLY_FILLED),
        ("closed", 1.0, OrderStatus.FILLED),
        ("canceled", 0.3, OrderStatus.CANCELED),
        ("expired", 0.0, OrderStatus.CANCELED),
        ("rejected", 0.0, OrderStatus.FAILED),
        (None, 0.0, OrderStatus.OPEN),
    ],
)
def test_order_status(status: str | None, filled: float, expected: OrderStatus) -> None:
    assert order_status(status, filled) is expected


def test_unknown_status_is_refused() -> None:
    with pytest.raises(UnknownOrderStatus):
        order_status("pending_weird", 0.0)


def test_fee_total_keeps_one_currency() -> None:
    assert fee_total(None, [{"cost": 1.0, "currency": "USDT"}, {"cost": 0.5, "currency": "USDT"},
                            {"cost": 9.0, "currency": "BNB"}]) == (1.5, "USDT")
    assert fee_total({"cost": 0.2, "currency": "BTC"}, []) == (0.2, "BTC")
    assert fee_total(None, None) == (0.0, "")


def test_request_to_ccxt_args() -> None:
    limit = OrderRequest("c1", "LTC/USDT", Side.BUY, OrderType.LIMIT, 0.2, 50.0)
    args = order_request_to_ccxt(limit, "binance")
    assert (args.symbol, args.type, args.side, args.amount, args.price) == ("LTC/USDT", "limit", "buy", 0.2, 50.0)
    assert args.params == {"newClientOrderId": "c1", "timeInForce": "GTC"}

    post = OrderRequest("c2", "BTC/USD", Side.SELL, OrderType.LIMIT, 1, 30000, TimeInForce.POST_ONLY, reduce_only=True)
    assert order_request_to_ccxt(post, "kraken").params == {"clientOrderId": "c2", "postOnly": True, "reduceOnly": True}

    ioc = OrderRequest("c3", "BTC/USDT", Side.BUY, OrderType.LIMIT, 1, 100, TimeInForce.IOC)
    assert order_request_to_ccxt(ioc, "kraken").params["timeInForce"] == "IOC"

    market = OrderRequest("c4", "BTC/USDT", Side.BUY, OrderType.MARKET, 1)
    margs = order_request_to_ccxt(market, "binance")
    assert margs.price is None and margs.params == {"newClientOrderId": "c4"}

    with pytest.raises(ValueError):
        order_request_to_ccxt(OrderRequest("c5", "BTC/USDT", Side.BUY, OrderType.LIMIT, 1), "binance")
    with pytest.raises(ValueError):
        order_request_to_ccxt(OrderRequest("c6", "BTC/USDT", Side.BUY, OrderType.MARKET, 0), "binance")

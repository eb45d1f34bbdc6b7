"""A loopback HTTP exchange that answers ccxt with the exchange's REAL recorded responses.

The recordings are ccxt's static test fixtures in ``shared/data/ccxt_static/<exchange>/``:

* ``request/X.json``: for each ccxt method and input, the exact URL (and body) ccxt sends;
* ``response/X.json``: for each ccxt method and input, the exchange's recorded HTTP response body.

Static replay joins the two files on (method, input) to learn which path and parameters each recorded
response belongs to, then answers an incoming request with the recorded response whose path matches and
whose recorded parameters agree best with the incoming ones (signature, timestamp, nonce, recvWindow and
client order ids - the fixture's ``skipKeys`` - are ignored).

An optional per-exchange *book* (e.g. `BinanceSpotBook`) keeps the little state a trading scenario needs:
orders we create are stored in the exchange's own recorded order format (a recorded response used as a
template, with the fields of our request filled in), so fetching, cancelling and listing them behaves like
the exchange would. Faults can be injected on the Nth request: drop the connection before or after the
request is processed, or never answer (client-side timeout).

Point a ccxt exchange at it with `attach(exchange)`: every ``urls['api']`` entry keeps its path but gets the
loopback's scheme and host, and markets/currencies are loaded from the fixture files (no network call). The stored Binance markets
give precision in decimal places (older ccxt); they are converted to the tick sizes ccxt 4.5 expects.
"""

from __future__ import annotations

import asyncio
import copy
import json
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, Self
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from aiohttp import web
from ccxt.base.decimal_to_precision import TICK_SIZE

FaultKind = Literal["drop_before", "drop_after", "timeout"]

# Recorded params that identify a call rather than select a response; ignored when matching.
_ALWAYS_SKIP = {"signature", "timestamp", "recvWindow", "nonce", "newClientOrderId", "newClientStrategyId"}


@dataclass(frozen=True, slots=True)
class SeenRequest:
    method: str  # HTTP verb
    path: str
    params: dict[str, str]  # query string and form body merged


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any


@dataclass(frozen=True, slots=True)
class _Route:
    ccxt_method: str
    description: str
    path: str
    params: dict[str, str]
    body: Any


@dataclass(slots=True)
class _Fault:
    remaining: int  # matching requests still to let through before this one
    kind: FaultKind
    method: str | None = None
    path: str | None = None

    def matches(self, request: SeenRequest) -> bool:
        return (self.method is None or request.method == self.method) and (self.path is None or request.path == self.path)


class ExchangeFixtures:
    """The four fixture files of one exchange."""

    def __init__(self, root: Path, exchange_id: str) -> None:
        self.exchange_id = exchange_id
        self.requests = json.loads((root / "request" / f"{exchange_id}.json").read_text())
        self.responses = json.loads((root / "response" / f"{exchange_id}.json").read_text())
        self.markets: dict[str, Any] = json.loads((root / "markets" / f"{exchange_id}.json").read_text())
        self.currencies: dict[str, Any] = json.loads((root / "currencies" / f"{exchange_id}.json").read_text())
        self.skip_keys = set(self.requests.get("skipKeys", [])) | _ALWAYS_SKIP

    def response_cases(self, method: str) -> list[dict[str, Any]]:
        return list(self.responses["methods"].get(method, []))

    def response(self, method: str, description: str) -> Any:
        """The recorded HTTP response body of one case (a deep copy: callers may edit it)."""
        for case in self.response_cases(method):
            if case["description"] == description:
                return copy.deepcopy(case["httpResponse"])
        raise KeyError(f"{self.exchange_id}: no recorded {method} response {description!r}")

    def routes(self) -> list[_Route]:
        """Every recorded response that can be tied to a recorded request URL."""
        routes = []
        for method, cases in self.responses["methods"].items():
            requests = self.requests["methods"].get(method, [])
            for case in cases:
                request = _matching_request(case["input"], requests)
                if request is None:
                    continue
                url = urlsplit(request["url"])
                params = dict(parse_qsl(url.query, keep_blank_values=True))
                if isinstance(request.get("output"), str):
                    params.update(parse_qsl(request["output"], keep_blank_values=True))
                params = {k: v for k, v in params.items() if k not in self.skip_keys}
                routes.append(_Route(method, case["description"], url.path, params, case["httpResponse"]))
        return routes


def _matching_request(inputs: list[Any], requests: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The recorded request of the same call: same input, else same symbol argument and same params, else
    (when the method has a single endpoint) that endpoint without parameters."""
    for request in requests:
        if request["input"] == inputs:
            return request

    def signature(args: list[Any]) -> tuple[Any, Any]:
        first = args[0] if args and not isinstance(args[0], dict) else None
        params = args[-1] if args and isinstance(args[-1], dict) else {}
        return first, json.dumps(params, sort_keys=True)

    wanted = signature(inputs)
    for request in requests:
        if signature(request["input"]) == wanted:
            return request
    paths = {urlsplit(r["url"]).path for r in requests}
    if len(paths) == 1:  # the method has one endpoint (Kraken): any recorded request tells its path
        return {"url": urlunsplit(urlsplit(requests[0]["url"])._replace(query=""))}
    return None


def _verb_fit(ccxt_method: str, verb: str) -> float | None:
    """How well an HTTP verb fits a ccxt method (None: it cannot be this method)."""
    preferred = {"create": ("POST",), "edit": ("PUT", "POST"), "withdraw": ("POST",), "cancel": ("DELETE", "POST")}
    for prefix, verbs in preferred.items():
        if ccxt_method.startswith(prefix):
            return 1.0 if verb in verbs else None
    if verb == "GET":
        return 1.0
    return 0.5 if verb == "POST" else None  # private fetches are POSTs on some exchanges (Kraken)


def load_fixture_markets(exchange: Any, fixtures: ExchangeFixtures) -> None:
    """Load the fixture markets and currencies into a ccxt exchange (no network call)."""
    markets = copy.deepcopy(fixtures.markets)
    currencies = copy.deepcopy(fixtures.currencies)
    if exchange.precisionMode == TICK_SIZE and _in_decimal_places(markets):
        for market in markets.values():
            if market.get("precision"):
                market["precision"] = {k: _tick(v) for k, v in market["precision"].items()}
    # The stored markets omit keys that are None (e.g. spot 'inverse'); ccxt's parsers index them.
    markets = {symbol: exchange.safe_market_structure(m) for symbol, m in markets.items()}
    exchange.set_markets(markets, currencies)


def _in_decimal_places(markets: dict[str, Any]) -> bool:
    """The stored Binance markets predate ccxt's switch to tick-size precision: 3 means 0.001 there."""
    values = [v for m in markets.values() for v in (m.get("precision") or {}).values() if v is not None]
    return bool(values) and all(float(v).is_integer() for v in values)


def _tick(decimals: Any) -> Any:
    if decimals is None or not float(decimals).is_integer():
        return decimals
    return float(f"1e-{int(decimals)}")


class Book(Protocol):
    """Per-exchange state for trading scenarios; `handle` returns None to fall back to static replay."""

    def handle(self, request: SeenRequest, static: Callable[[SeenRequest], Any | None]) -> Reply | None: ...


class LoopbackExchange:
    def __init__(self, fixtures: ExchangeFixtures, book: Book | None = None) -> None:
        self.fixtures = fixtures
        self.book = book
        self.requests: list[SeenRequest] = []
        self.unmatched: list[SeenRequest] = []
        self._routes = fixtures.routes()
        self._faults: list[_Fault] = []
        self._runner: web.AppRunner | None = None
        self._never = asyncio.Event()
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        site = web.SockSite(self._runner, sock)
        await site.start()
        return self.base_url

    async def stop(self) -> None:
        self._never.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- wiring a ccxt exchange --------------------------------------------------------------------------------
    def attach(self, exchange: Any) -> None:
        """Send every API call of `exchange` here and load the fixture markets/currencies into it."""
        exchange.urls["api"] = self._rewrite(exchange.urls["api"])
        load_fixture_markets(exchange, self.fixtures)

    def _rewrite(self, node: Any) -> Any:
        if isinstance(node, str):
            parts = urlsplit(node)
            return urlunsplit(("http", f"127.0.0.1:{self.port}", parts.path, parts.query, parts.fragment))
        if isinstance(node, dict):
            return {key: self._rewrite(value) for key, value in node.items()}
        return node

    # -- faults ----------------------------------------------------------------------------------------------
    def inject_fault(self, nth: int, kind: FaultKind, *, method: str | None = None, path: str | None = None) -> None:
        """Fault on the `nth` request from now on (1 = the next request); with `method` and/or `path`, on the
        nth request of that kind only (other requests, e.g. a polling loop's, pass untouched).

        drop_before: close the connection without processing; drop_after: process the request (e.g. place
        the order) and close the connection instead of answering; timeout: never answer.
        """
        if nth < 1:
            raise ValueError("nth counts from 1 (the next matching request)")
        self._faults.append(_Fault(nth, kind, method, path))

    def _take_fault(self, request: SeenRequest) -> _Fault | None:
        hit = None
        for fault in self._faults:
            if fault.matches(request):
                fault.remaining -= 1
                if fault.remaining == 0:
                    if hit is None:
                        hit = fault
                    else:  # two faults for the same request: the later one takes the next matching request
                        fault.remaining = 1
        self._faults = [f for f in self._faults if f.remaining > 0]
        return hit

    def count(self, verb: str, path: str) -> int:
        return sum(1 for r in self.requests if r.method == verb and r.path == path)

    # -- serving ---------------------------------------------------------------------------------------------
    async def _handle(self, http: web.Request) -> web.StreamResponse:
        params = dict(http.query)
        if http.can_read_body:
            raw = await http.text()
            if raw and http.content_type != "application/json":
                params.update(parse_qsl(raw, keep_blank_values=True))
            elif raw:
                params.update({k: str(v) for k, v in json.loads(raw).items()})
        request = SeenRequest(http.method, http.path, params)
        self.requests.append(request)
        fault = self._take_fault(request)
        if fault is not None and fault.kind == "timeout":
            await self._never.wait()
        if fault is not None and fault.kind == "drop_before":
            return self._drop(http)
        reply = self._answer(request)
        if fault is not None and fault.kind == "drop_after":
            return self._drop(http)
        return web.json_response(reply.body, status=reply.status)

    @staticmethod
    def _drop(http: web.Request) -> web.StreamResponse:
        assert http.transport is not None
        http.transport.abort()
        return web.Response(status=500)

    def _answer(self, request: SeenRequest) -> Reply:
        if self.book is not None:
            reply = self.book.handle(request, self.static)
            if reply is not None:
                return reply
        body = self.static(request)
        if body is None:
            self.unmatched.append(request)
            return Reply(404, {"code": -1, "msg": f"loopback: no recorded response for {request.method} {request.path}"})
        return Reply(200, body)

    def static(self, request: SeenRequest) -> Any | None:
        """The best-matching recorded response body for `request` (a deep copy), or None."""
        best: tuple[float, _Route] | None = None
        for route in self._routes:
            if route.path != request.path:
                continue
            fit = _verb_fit(route.ccxt_method, request.method)
            if fit is None:
                continue
            score = fit
            for key, value in route.params.items():
                if key in self.fixtures.skip_keys:
                    continue
                if request.params.get(key) == value:
                    score += 1
                elif key in request.params:
                    score -= 2
                else:
                    score -= 0.5
            if best is None or score > best[0]:
                best = (score, route)
        return copy.deepcopy(best[1].body) if best is not None else None


# --------------------------------------------------------------------------------------------------------------
# Binance spot
# --------------------------------------------------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{value:.8f}"


def _is_linear(market: dict[str, Any]) -> bool:
    return market.get("type") in ("swap", "future") and bool(market.get("linear"))


def _is_inverse(market: dict[str, Any]) -> bool:
    return market.get("type") in ("swap", "future") and bool(market.get("inverse"))


# exchangeInfo per API family (spot, USD-M futures, COIN-M futures): which recorded markets each lists
_EXCHANGE_INFO: dict[str, Callable[[dict[str, Any]], bool]] = {
    "/api/v3/exchangeInfo": lambda m: m.get("type") == "spot",
    "/fapi/v1/exchangeInfo": _is_linear,
    "/dapi/v1/exchangeInfo": _is_inverse,
}


@dataclass
class BinanceSpotBook:
    """Binance spot orders placed during a test, in Binance's recorded wire formats.

    Templates: the recorded spot createOrder answer (POST /api/v3/order), the recorded spot fetchOrder
    answer (GET /api/v3/order) and the recorded spot trade (GET /api/v3/myTrades). Error bodies use Binance's
    documented codes: -2013 "Order does not exist.", -2011 "Unknown order sent.", -2010 for rejected orders.

    The recorded open spot order (GET /api/v3/openOrders) is in the book from the start, so it can be fetched
    and cancelled by its client order id like any other. ``exchangeInfo`` (spot, USD-M and COIN-M) is served
    from the ``info`` of the recorded markets, so a ccxt client that was not `attach`ed (another process,
    pointed here by URL) loads the same markets through ccxt's own parser.
    """

    fixtures: ExchangeFixtures
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # clientOrderId -> query-format order
    trades: list[dict[str, Any]] = field(default_factory=list)
    created: int = 0  # orders actually placed
    reject_next: tuple[int, str] | None = None  # (code, msg) for the next create
    lagging_queries: int = 0  # answer this many next order queries "does not exist" (index lag)
    not_found: Counter[str] = field(default_factory=Counter)  # "does not exist" answers per client order id
    hidden: Counter[str] = field(default_factory=Counter)  # client order id -> queries still answered "does not exist"
    now_ms: int = 1_700_000_000_000
    _next_order_id: int = 9_100_000_001
    _next_trade_id: int = 500_000_001

    def __post_init__(self) -> None:
        self._create_tpl = self.fixtures.response("createOrder", "spot +selfTradePrevention +iceberg")
        self._query_tpl = self.fixtures.response("fetchOrder", "Fetch spot closed order")
        self._trade_tpl = self.fixtures.response("fetchMyTrades", "Spot private trade")[0]
        for order in self.fixtures.response("fetchOpenOrders", "Fetch spot open orders"):
            self.orders[order["clientOrderId"]] = order

    def _exchange_info(self, path: str) -> Reply:
        """Binance's exchangeInfo answer for one API family, from the recorded markets' raw entries."""
        wanted = _EXCHANGE_INFO[path]
        symbols: dict[str, Any] = {}
        for market in self.fixtures.markets.values():
            if wanted(market) and market.get("info"):
                symbols.setdefault(market["info"]["symbol"], copy.deepcopy(market["info"]))
        return Reply(200, {"timezone": "UTC", "serverTime": self.now_ms, "rateLimits": [], "exchangeFilters": [],
                           "symbols": list(symbols.values())})

    def _tick(self) -> int:
        self.now_ms += 1
        return self.now_ms

    @staticmethod
    def _error(code: int, msg: str) -> Reply:
        return Reply(400, {"code": code, "msg": msg})

    def handle(self, request: SeenRequest, static: Callable[[SeenRequest], Any | None]) -> Reply | None:
        path, verb = request.path, request.method
        if path in _EXCHANGE_INFO and verb == "GET":
            return self._exchange_info(path)
        if path == "/api/v3/order":
            if verb == "POST":
                return self._create(request.params)
            if verb == "GET":
                return self._query(request, static)
            if verb == "DELETE":
                return self._cancel(request.params)
        if path == "/api/v3/openOrders" and verb == "GET":
            symbol = request.params.get("symbol")
            live = [copy.deepcopy(o) for o in self.orders.values() if o["status"] in ("NEW", "PARTIALLY_FILLED")]
            return Reply(200, [o for o in live if symbol is None or o["symbol"] == symbol])
        if path == "/api/v3/myTrades" and verb == "GET":
            recorded = static(request) or []
            symbol = request.params.get("symbol")
            mine = copy.deepcopy(self.trades)
            return Reply(200, [t for t in recorded + mine if symbol is None or t["symbol"] == symbol])
        return None

    def _find(self, params: dict[str, str]) -> dict[str, Any] | None:
        cid = params.get("origClientOrderId")
        if cid is not None:
            return self.orders.get(cid)
        order_id = params.get("orderId")
        return next((o for o in self.orders.values() if o["orderId"] == order_id), None)

    def _create(self, params: dict[str, str]) -> Reply:
        if self.reject_next is not None:
            code, msg = self.reject_next
            self.reject_next = None
            return self._error(code, msg)
        cid = params["newClientOrderId"]
        if cid in self.orders:
            return self._error(-2010, "Duplicate order sent.")
        if params.get("type") not in ("LIMIT", "LIMIT_MAKER"):
            return self._error(-1013, "loopback book: only LIMIT orders are supported")
        order = self._insert(params)
        self.created += 1
        answer = copy.deepcopy(self._create_tpl)
        answer.pop("icebergQty", None)
        for key in ("symbol", "orderId", "clientOrderId", "price", "origQty", "executedQty",
                    "cummulativeQuoteQty", "status", "timeInForce", "type", "side", "workingTime"):
            answer[key] = order[key]
        answer["transactTime"] = order["time"]
        answer["fills"] = []
        return Reply(200, answer)

    def _insert(self, params: dict[str, str]) -> dict[str, Any]:
        ts = self._tick()
        order_id = str(self._next_order_id)
        self._next_order_id += 1
        order = copy.deepcopy(self._query_tpl)
        order.update(
            symbol=params["symbol"], orderId=order_id, clientOrderId=params["newClientOrderId"],
            price=_num(float(params["price"])),
            origQty=_num(float(params["quantity"])), executedQty=_num(0), cummulativeQuoteQty=_num(0),
            status="NEW", timeInForce=params.get("timeInForce", "GTC"), type=params["type"], side=params["side"],
            time=str(ts), updateTime=str(ts), workingTime=str(ts),
        )
        self.orders[params["newClientOrderId"]] = order
        return order

    def _query(self, request: SeenRequest, static: Callable[[SeenRequest], Any | None]) -> Reply:
        key = request.params.get("origClientOrderId") or request.params.get("orderId", "")
        if self.lagging_queries > 0 or self.hidden[key] > 0:
            if self.hidden[key] > 0:
                self.hidden[key] -= 1
            else:
                self.lagging_queries -= 1
            self.not_found[key] += 1
            return self._error(-2013, "Order does not exist.")
        order = self._find(request.params)
        if order is not None:
            return Reply(200, copy.deepcopy(order))
        if request.params.get("orderId") == self._query_tpl["orderId"]:
            return Reply(200, copy.deepcopy(self._query_tpl))  # the recorded order itself
        self.not_found[key] += 1
        return self._error(-2013, "Order does not exist.")

    def _cancel(self, params: dict[str, str]) -> Reply:
        order = self._find(params)
        if order is None or order["status"] not in ("NEW", "PARTIALLY_FILLED"):
            return self._error(-2011, "Unknown order sent.")
        ts = self._tick()
        order.update(status="CANCELED", updateTime=str(ts))
        answer = {
            "symbol": order["symbol"], "origClientOrderId": order["clientOrderId"], "orderId": order["orderId"],
            "orderListId": "-1", "clientOrderId": f"cancel{ts}", "transactTime": str(ts),
            "price": order["price"], "origQty": order["origQty"], "executedQty": order["executedQty"],
            "cummulativeQuoteQty": order["cummulativeQuoteQty"], "status": "CANCELED",
            "timeInForce": order["timeInForce"], "type": order["type"], "side": order["side"],
            "selfTradePreventionMode": order["selfTradePreventionMode"],
        }
        return Reply(200, answer)

    # -- scenario helpers (the exchange acting on its own) -----------------------------------------------------
    def place(self, client_order_id: str, symbol_id: str = "LTCUSDT", side: str = "BUY", quantity: float = 0.2,
              price: float = 50.0) -> None:
        """An open LIMIT order placed by someone else (e.g. a process that crashed before recording it)."""
        if client_order_id in self.orders:
            raise ValueError(f"{client_order_id} is already in the book")
        self._insert({"symbol": symbol_id, "newClientOrderId": client_order_id, "side": side, "type": "LIMIT",
                      "quantity": _num(quantity), "price": _num(price), "timeInForce": "GTC"})

    def fill(self, client_order_id: str, quantity: float | None = None, maker: bool = True) -> None:
        """Execute (part of) an open order at its limit price, recording a trade."""
        order = self.orders[client_order_id]
        orig, done, price = float(order["origQty"]), float(order["executedQty"]), float(order["price"])
        qty = orig - done if quantity is None else quantity
        ts = self._tick()
        done += qty
        order.update(
            executedQty=_num(done), cummulativeQuoteQty=_num(done * price), updateTime=str(ts),
            status="FILLED" if done >= orig - 1e-12 else "PARTIALLY_FILLED",
        )
        trade = copy.deepcopy(self._trade_tpl)
        trade.update(
            symbol=order["symbol"], id=str(self._next_trade_id), orderId=order["orderId"], price=_num(price),
            qty=_num(qty), quoteQty=_num(qty * price), commission=_num(qty * price * 0.001),
            commissionAsset="USDT", time=str(ts), isBuyer=order["side"] == "BUY", isMaker=maker,
        )
        self._next_trade_id += 1
        self.trades.append(trade)

    def hide(self, client_order_id: str, queries: int) -> None:
        """Answer the next `queries` queries of this order "does not exist" (index lag for one order)."""
        self.hidden[client_order_id] += queries

    def forget(self, client_order_id: str) -> None:
        """The exchange no longer knows the order (e.g. purged after a long outage)."""
        del self.orders[client_order_id]

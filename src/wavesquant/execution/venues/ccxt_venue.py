"""Live trading through ccxt (asyncio).

Every REST call goes through the shared rate limiter and through one error translation:

* ccxt.OrderNotFound -> OrderNotFound
* ccxt.InvalidOrder / ccxt.InsufficientFunds -> OrderRejected(<ccxt error class>, message)
* ccxt.NetworkError (RequestTimeout, RateLimitExceeded/DDoSProtection, ExchangeNotAvailable, ...) ->
  VenueUnavailable: the outcome is unknown, ask the venue before retrying
* any other ccxt error -> VenueError

Idempotency: `submit` first asks the venue whether it already knows the client order id and returns that
order if so; only an unknown id is sent. A create answered with a rejection is checked once more, so a
"duplicate order" rejection returns the order the venue already has.

Safety: a venue on the real exchange (``sandbox=False``) needs ``live=True`` and ``confirm_live=True``.
Credentials are never logged; error texts are scrubbed of them before they are logged or raised.

`api_url` (sandbox only) sends every REST call to another host, keeping each endpoint's path: a local test
exchange. A real-money venue refuses it, so a misconfigured URL can never receive live keys.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import ccxt
import ccxt.async_support as ccxt_async
import structlog

from wavesquant.execution.venues.base import (
    Fill,
    OrderNotFound,
    OrderRejected,
    OrderRequest,
    Venue,
    VenueError,
    VenueOrder,
    VenueUnavailable,
)
from wavesquant.execution.venues.ccxt_mapping import (
    balances_total,
    ccxt_order_to_venue_order,
    ccxt_trade_to_fill,
    order_request_to_ccxt,
    positions_net,
)
from wavesquant.execution.venues.credentials import ExchangeCredentials
from wavesquant.execution.venues.rate_limit import RateLimiter

log = structlog.get_logger(__name__)

# Exchanges whose fetch_order/cancel_order take our client order id directly (params clientOrderId).
# Others are looked up by scanning open and closed orders for the client order id.
_FETCH_BY_CLIENT_ID = {"binance", "binanceusdm", "binancecoinm"}


_SIGNED_PARAM = re.compile(r"(signature|apiKey|api_key|nonce)=[^&\s]+")


def _key(order: VenueOrder) -> str:
    return order.client_order_id or order.venue_order_id


def _state(order: VenueOrder) -> tuple[str, float]:
    return order.status.value, order.filled_quantity


class LiveTradingNotConfirmed(ValueError):
    """A real-money venue was requested without the explicit live flags."""


def parse_api_url(api_url: str) -> SplitResult:
    """`http(s)://host[:port]` (no path): the base an `api_url` override must have."""
    parts = urlsplit(api_url)
    has_path = parts.path not in ("", "/") or bool(parts.query)
    if parts.scheme not in ("http", "https") or not parts.netloc or has_path:
        raise ValueError(f"api_url must look like http://host:port (no path), got {api_url!r}")
    return parts


def rewrite_rest_urls(node: Any, base: SplitResult) -> Any:
    """Every http(s) URL in a ccxt `urls['api']` tree with `base`'s scheme and host, its own path kept.
    Websocket URLs stay as they are."""
    if isinstance(node, str):
        parts = urlsplit(node)
        if parts.scheme not in ("http", "https"):
            return node
        return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, parts.fragment))
    if isinstance(node, dict):
        return {key: rewrite_rest_urls(value, base) for key, value in node.items()}
    return node


def _exchange_class(exchange_id: str, websocket: bool) -> type[Any]:
    if websocket:
        try:
            import ccxt.pro as ccxt_pro

            cls = getattr(ccxt_pro, exchange_id, None)
            if cls is not None:
                return cls
        except ImportError:  # pragma: no cover - ccxt.pro ships with ccxt 4
            pass
    cls = getattr(ccxt_async, exchange_id, None)
    if cls is None:
        raise ValueError(f"ccxt has no exchange {exchange_id!r}")
    return cls


class CcxtVenue(Venue):
    def __init__(
        self,
        exchange_id: str,
        *,
        limiter: RateLimiter,
        credentials: ExchangeCredentials | None = None,
        sandbox: bool = True,
        live: bool = False,
        confirm_live: bool = False,
        market_type: str = "spot",
        symbols: Sequence[str] = (),
        websocket: bool = True,
        timeout_ms: int = 10_000,
        poll_interval_s: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        api_url: str | None = None,
    ) -> None:
        """`symbols`: the markets this venue trades, used where the exchange needs a symbol per call
        (fills without a symbol). `websocket`: use ccxt.pro (watch_orders) where the exchange offers it.
        `api_url`: send every REST call to this http(s)://host:port instead (sandbox only; tests)."""
        if sandbox and live:
            raise ValueError("sandbox=True and live=True contradict each other")
        if not sandbox and not (live and confirm_live):
            raise LiveTradingNotConfirmed(
                f"{exchange_id}: a non-sandbox venue trades real money; pass live=True and confirm_live=True"
            )
        if api_url is not None and not sandbox:
            raise ValueError(f"{exchange_id}: api_url overrides are for the sandbox only, "
                             f"never with real money")
        base = parse_api_url(api_url) if api_url is not None else None
        self.name = exchange_id
        self.sandbox = sandbox
        self.market_type = market_type
        self._id = exchange_id
        self._limiter = limiter
        self._symbols = tuple(symbols)
        self._poll_interval_s = poll_interval_s
        self._sleep = sleep
        self._secrets = tuple(credentials.ccxt_config().values()) if credentials is not None else ()
        config: dict[str, Any] = {
            "enableRateLimit": False,  # the shared limiter governs every call
            "timeout": timeout_ms,
            "options": {"defaultType": market_type, "warnOnFetchOpenOrdersWithoutSymbol": False},
        }
        if credentials is not None:
            config.update(credentials.ccxt_config())
        self._exchange = _exchange_class(exchange_id, websocket)(config)
        self._websocket = websocket
        if sandbox:
            if not self._exchange.urls.get("test"):
                raise ValueError(
                    f"{exchange_id} has no sandbox/testnet in ccxt; use live=True, confirm_live=True"
                )
            self._exchange.set_sandbox_mode(True)
        if base is not None:
            self._exchange.urls["api"] = rewrite_rest_urls(self._exchange.urls["api"], base)
        self._client_ids: dict[str, str] = {}  # venue order id -> client order id, for fills
        log.info("ccxt_venue_created", venue=self.name, sandbox=sandbox, market_type=market_type,
                 key_id=credentials.key_id if credentials else "public",
                 api_url=urlunsplit(base) if base is not None else None)

    @property
    def limiter(self) -> RateLimiter:
        """The request budget every call of this venue draws on."""
        return self._limiter

    @property
    def exchange(self) -> Any:
        """The underlying ccxt exchange (for wiring tests and diagnostics; do not trade through it)."""
        return self._exchange

    # -- plumbing --------------------------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return _SIGNED_PARAM.sub(r"\1=***", text)

    async def _call(self, op: str, fn: Callable[..., Awaitable[Any]], *args: Any, cost: float = 1,
                    **kwargs: Any) -> Any:
        if cost > 0:
            await self._limiter.acquire(cost)
        try:
            return await fn(*args, **kwargs)
        except ccxt.OrderNotFound as exc:
            raise OrderNotFound(self._scrub(str(exc))) from None
        except (ccxt.InvalidOrder, ccxt.InsufficientFunds) as exc:
            message = self._scrub(str(exc))
            log.warning("venue_rejected", venue=self.name, op=op, error=type(exc).__name__, detail=message)
            raise OrderRejected(type(exc).__name__, message) from None
        except ccxt.NetworkError as exc:
            message = self._scrub(str(exc))
            log.warning("venue_unavailable", venue=self.name, op=op, error=type(exc).__name__, detail=message)
            raise VenueUnavailable(f"{self.name} {op}: {type(exc).__name__}: {message}") from None
        except ccxt.BaseError as exc:
            message = self._scrub(str(exc))
            log.error("venue_error", venue=self.name, op=op, error=type(exc).__name__, detail=message)
            raise VenueError(f"{self.name} {op}: {type(exc).__name__}: {message}") from None

    def _order(self, raw: dict[str, Any], *, client_order_id: str | None = None,
               request: OrderRequest | None = None) -> VenueOrder:
        order = ccxt_order_to_venue_order(raw, client_order_id=client_order_id, request=request)
        if order.venue_order_id and order.client_order_id:
            self._client_ids[order.venue_order_id] = order.client_order_id
        return order

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def connect(self) -> None:
        await self._call("load_markets", self._exchange.load_markets)
        log.info("ccxt_venue_connected", venue=self.name, markets=len(self._exchange.markets or {}))

    async def close(self) -> None:
        await self._exchange.close()

    # -- orders ----------------------------------------------------------------------------------------------
    async def fetch_order(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        if self._id in _FETCH_BY_CLIENT_ID:
            try:
                raw = await self._call("fetch_order", self._exchange.fetch_order, "", symbol,
                                       {"clientOrderId": client_order_id})
            except OrderNotFound:
                return None
            return self._order(raw, client_order_id=client_order_id)
        return await self._scan_for(client_order_id, symbol)

    async def _scan_for(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        """Find an order by client id on exchanges that cannot fetch by it: open orders, then closed ones."""
        for op in ("fetch_open_orders", "fetch_closed_orders"):
            has_key = "fetchOpenOrders" if op == "fetch_open_orders" else "fetchClosedOrders"
            if not self._exchange.has.get(has_key):
                continue
            for raw in await self._call(op, getattr(self._exchange, op), symbol):
                if raw.get("clientOrderId") == client_order_id:
                    return self._order(raw)
        return None

    async def submit(self, request: OrderRequest) -> VenueOrder:
        args = order_request_to_ccxt(request, self._id)
        cid = request.client_order_id
        existing = await self.fetch_order(cid, request.symbol)
        if existing is not None:
            log.info("submit_known_order", venue=self.name, client_order_id=cid, status=existing.status.value)
            return existing
        log.info("submit_order", venue=self.name, client_order_id=cid, symbol=request.symbol,
                 side=request.side.value, type=request.type.value, quantity=request.quantity,
                 limit_price=request.limit_price)
        try:
            raw = await self._call("create_order", self._exchange.create_order, args.symbol, args.type,
                                   args.side, args.amount, args.price, args.params)
        except OrderRejected:
            again = await self.fetch_order(cid, request.symbol)
            if again is not None:  # e.g. "duplicate order": the venue has it after all
                log.info("submit_known_order", venue=self.name, client_order_id=cid,
                         status=again.status.value)
                return again
            raise
        except VenueUnavailable:
            log.warning("submit_outcome_unknown", venue=self.name, client_order_id=cid)
            raise
        if raw.get("status") is None or raw.get("amount") is None:
            # A sparse acknowledgement (id only): read the venue's full view of the order.
            found = await self.fetch_order(cid, request.symbol)
            if found is not None:
                return found
        return self._order(raw, client_order_id=cid, request=request)

    async def cancel(self, client_order_id: str, symbol: str) -> VenueOrder:
        log.info("cancel_order", venue=self.name, client_order_id=client_order_id, symbol=symbol)
        try:
            if self._id in _FETCH_BY_CLIENT_ID:
                raw = await self._call("cancel_order", self._exchange.cancel_order, "", symbol,
                                       {"clientOrderId": client_order_id})
            else:
                known = await self.fetch_order(client_order_id, symbol)
                if known is None:
                    raise OrderNotFound(f"{self.name} does not know client order id {client_order_id}")
                raw = await self._call("cancel_order", self._exchange.cancel_order, known.venue_order_id,
                                       symbol)
        except (OrderNotFound, OrderRejected):
            # Already filled/canceled orders are "unknown" to some cancel endpoints: report their final state.
            final = await self.fetch_order(client_order_id, symbol)
            if final is None:
                raise OrderNotFound(f"{self.name} does not know client order id {client_order_id}") from None
            return final
        if raw.get("status") is None or raw.get("amount") is None:
            final = await self.fetch_order(client_order_id, symbol)
            if final is not None:
                return final
        return self._order(raw, client_order_id=client_order_id)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        raws = await self._call("fetch_open_orders", self._exchange.fetch_open_orders, symbol)
        return [self._order(raw) for raw in raws]

    async def fetch_fills(self, symbol: str | None = None, since_ms: int | None = None) -> list[Fill]:
        symbols: Sequence[str | None] = [symbol] if symbol is not None else (self._symbols or [None])
        fills: list[Fill] = []
        for sym in symbols:
            trades = await self._call("fetch_my_trades", self._exchange.fetch_my_trades, sym, since_ms)
            for trade in trades:
                fills.append(ccxt_trade_to_fill(trade, self._client_ids.get(str(trade.get("order")), "")))
        return fills

    async def fetch_balances(self) -> dict[str, float]:
        return balances_total(await self._call("fetch_balance", self._exchange.fetch_balance))

    async def fetch_positions(self) -> dict[str, float]:
        """Derivative positions; a spot venue has none ({}), its holdings are in fetch_balances."""
        if self.market_type == "spot" or not self._exchange.has.get("fetchPositions"):
            return {}
        return positions_net(await self._call("fetch_positions", self._exchange.fetch_positions))

    # -- order updates ---------------------------------------------------------------------------------------
    async def watch_orders(self, symbol: str | None = None) -> AsyncIterator[VenueOrder]:
        """Order updates as they happen: ccxt.pro's websocket stream where the exchange offers one, else
        polling (`_poll_orders`)."""
        if self._websocket and self._exchange.has.get("watchOrders"):
            while True:
                try:
                    raws = await self._call("watch_orders", self._exchange.watch_orders, symbol, cost=0)
                except VenueUnavailable:
                    await self._sleep(self._poll_interval_s)
                    continue
                for raw in raws:
                    yield self._order(raw)
        else:
            async for order in self._poll_orders(symbol):
                yield order

    async def _poll_orders(self, symbol: str | None) -> AsyncIterator[VenueOrder]:
        """Poll open orders; yield every new or changed order, and the final state of orders that left the
        open set (fetched by client order id). Transient failures are logged and polling continues."""
        seen: dict[str, tuple[str, float]] = {}
        open_before: dict[str, VenueOrder] = {}
        while True:
            try:
                current = {_key(o): o for o in await self.fetch_open_orders(symbol)}
                changed = [o for k, o in current.items() if seen.get(k) != _state(o)]
                gone = [o for key, o in open_before.items() if key not in current]
                finals = []
                for order in gone:
                    if not order.client_order_id:
                        continue
                    final = await self.fetch_order(order.client_order_id, order.symbol)
                    if final is not None:
                        finals.append(final)
            except VenueUnavailable:
                await self._sleep(self._poll_interval_s)
                continue
            for key in [k for k in open_before if k not in current]:
                seen.pop(key, None)
            open_before = current
            for order in changed:
                seen[_key(order)] = _state(order)
                yield order
            for order in finals:
                yield order
            await self._sleep(self._poll_interval_s)

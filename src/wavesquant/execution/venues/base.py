"""The venue interface every trading venue implements (paper, ccxt).

A venue is the exchange as execution sees it. Every call is keyed by the client order id we chose, so a
retried submit never trades twice: `submit` of a client order id the venue already knows returns the
existing order instead of placing a new one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from wavesquant.types import Liquidity, OrderStatus, OrderType, Side, TimeInForce


@dataclass(frozen=True, slots=True)
class OrderRequest:
    client_order_id: str
    symbol: str  # ccxt unified symbol, e.g. "BTC/USDT"
    side: Side
    type: OrderType
    quantity: float
    limit_price: float | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    strategy_id: str = ""
    ts_ms: int = 0


@dataclass(frozen=True, slots=True)
class Fill:
    client_order_id: str
    venue_order_id: str
    fill_id: str  # unique per venue; fills are de-duplicated by it
    symbol: str
    side: Side
    quantity: float
    price: float
    fee: float  # in fee_currency, positive = paid
    fee_currency: str
    liquidity: Liquidity
    ts_ms: int


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """The venue's view of one order."""

    client_order_id: str
    venue_order_id: str
    symbol: str
    side: Side
    type: OrderType
    quantity: float
    limit_price: float | None
    status: OrderStatus
    filled_quantity: float = 0.0
    average_price: float | None = None
    fees: float = 0.0
    ts_ms: int = 0
    fills: tuple[Fill, ...] = field(default_factory=tuple)

    @property
    def remaining(self) -> float:
        return max(self.quantity - self.filled_quantity, 0.0)


class VenueError(Exception):
    """Base of every venue failure."""


class OrderRejected(VenueError):
    """The venue refused the order; retrying the same request will not help."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class OrderNotFound(VenueError):
    """The venue does not know this client order id."""


class VenueUnavailable(VenueError):
    """Transient failure (network, timeout, rate limit): the outcome is unknown, ask the venue before retrying."""


class Venue(ABC):
    name: str

    @abstractmethod
    async def connect(self) -> None:
        """Open connections and load market metadata."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def submit(self, request: OrderRequest) -> VenueOrder:
        """Place an order. Idempotent by client order id: a known id returns the existing order."""

    @abstractmethod
    async def cancel(self, client_order_id: str, symbol: str) -> VenueOrder:
        """Cancel an open order; raises OrderNotFound if the venue does not know it."""

    @abstractmethod
    async def fetch_order(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        """The venue's current view of an order, or None if it does not know the client order id."""

    @abstractmethod
    async def fetch_open_orders(self, symbol: str | None = None) -> list[VenueOrder]: ...

    @abstractmethod
    async def fetch_fills(self, symbol: str | None = None, since_ms: int | None = None) -> list[Fill]: ...

    @abstractmethod
    async def fetch_balances(self) -> dict[str, float]:
        """Total balance per currency."""

    @abstractmethod
    async def fetch_positions(self) -> dict[str, float]:
        """Signed net position per symbol (derivatives; spot venues derive it from balances or return {})."""

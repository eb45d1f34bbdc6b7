"""Where the paper venue keeps its state, so the state outlives the process like an exchange's would.

Stored: the orders the venue remembers (`PaperOrder.to_dict()`, keyed by client order id: the open ones and the
latest closed ones; a commit deletes the ones the venue forgot), the latest `keep_fills` fills in the order they
happened (de-duplicated by fill_id when loaded), the balances and the positions. `commit` writes one batch
atomically. A store written before positions were stored has none: the venue then sums them from the fills.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis

from wavesquant.core.segmented import SegmentedDict
from wavesquant.execution.orders import fill_from_dict, fill_to_dict
from wavesquant.execution.venues.base import Fill

DEFAULT_KEEP_FILLS = 100_000


@dataclass(frozen=True, slots=True)
class PaperSnapshot:
    orders: list[dict[str, Any]]
    fills: list[Fill]  # unique by fill_id, oldest first
    balances: dict[str, float] | None  # None: never saved
    positions: dict[str, float] | None  # None: never saved (sum the fills)


@dataclass(frozen=True, slots=True)
class PaperCommit:
    """One atomic change: upsert `orders` by client order id, delete the `forget` ones, append `fills`,
    replace balances and positions."""

    orders: Sequence[Mapping[str, Any]]
    fills: Sequence[Fill]
    balances: Mapping[str, float]
    positions: Mapping[str, float]
    forget: Sequence[str] = ()

    def encoded(self) -> tuple[dict[str, str], list[str], str, str]:
        """The JSON text stored: orders by client order id, fills, balances, positions."""
        return (
            {_client_id(o): json.dumps(o, allow_nan=False) for o in self.orders},
            [json.dumps(fill_to_dict(f), allow_nan=False) for f in self.fills],
            json.dumps(dict(self.balances), allow_nan=False),
            json.dumps(dict(self.positions), allow_nan=False),
        )


class PaperStore(Protocol):
    async def load(self) -> PaperSnapshot: ...

    async def commit(self, change: PaperCommit) -> None: ...

    async def begin_commit(self, change: PaperCommit) -> Awaitable[None]:
        """Send the same commit and return an awaitable of its outcome (a store that cannot pipeline commits
        before returning)."""
        ...


async def _done() -> None:
    return None


def _unique(fills: Sequence[Fill]) -> list[Fill]:
    seen: set[str] = set()
    out: list[Fill] = []
    for fill in fills:
        if fill.fill_id not in seen:
            seen.add(fill.fill_id)
            out.append(fill)
    return out


def _client_id(order: Mapping[str, Any]) -> str:
    return str(order["request"]["client_order_id"])


class InMemoryPaperStore:
    """For tests and `wq run`: survives a venue restart within one process. Stores JSON text, like Redis."""

    def __init__(self, keep_fills: int = DEFAULT_KEEP_FILLS) -> None:
        self._orders: SegmentedDict[str, str] = SegmentedDict()
        self._fills: deque[str] = deque(maxlen=keep_fills)
        self._balances: str | None = None
        self._positions: str | None = None

    async def load(self) -> PaperSnapshot:
        return PaperSnapshot(
            orders=[json.loads(text) for text in self._orders.values()],
            fills=_unique([fill_from_dict(json.loads(text)) for text in self._fills]),
            balances=None if self._balances is None else json.loads(self._balances),
            positions=None if self._positions is None else json.loads(self._positions),
        )

    async def commit(self, change: PaperCommit) -> None:
        orders, fills, self._balances, self._positions = change.encoded()
        self._orders.update(orders)
        for client_order_id in change.forget:
            self._orders.pop(client_order_id, None)
        self._fills.extend(fills)

    async def begin_commit(self, change: PaperCommit) -> Awaitable[None]:
        await self.commit(change)
        return _done()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisPaperStore:
    """Keys under `key_prefix`: `orders` (hash client order id -> JSON), `fills` (list of JSON, appended and
    trimmed to the latest `keep_fills`; a retried commit may append a fill twice, `load` keeps the first),
    `balances` and `positions` (JSON strings)."""

    def __init__(self, redis_client: Redis, key_prefix: str = "wq:paper:",
                 transaction: Callable[[list[list[Any]]], Awaitable[Any]] | None = None,
                 begin_transaction: Callable[[list[list[Any]]], Awaitable[Awaitable[Any]]] | None = None,
                 keep_fills: int = DEFAULT_KEEP_FILLS) -> None:
        self._redis = redis_client
        self._transaction = transaction  # the bus's raw MULTI/EXEC (fast path); redis-py's otherwise
        self._begin_transaction = begin_transaction  # the same, pipelined: in order with the bus's stream writes
        self._keep_fills = keep_fills
        self._orders_key = f"{key_prefix}orders"
        self._fills_key = f"{key_prefix}fills"
        self._balances_key = f"{key_prefix}balances"
        self._positions_key = f"{key_prefix}positions"

    async def load(self) -> PaperSnapshot:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._orders_key)
            pipe.lrange(self._fills_key, 0, -1)
            pipe.get(self._balances_key)
            pipe.get(self._positions_key)
            orders, fills, balances, positions = await pipe.execute()
        return PaperSnapshot(
            orders=[json.loads(_text(text)) for text in orders.values()],
            fills=_unique([fill_from_dict(json.loads(_text(text))) for text in fills]),
            balances=None if balances is None else json.loads(_text(balances)),
            positions=None if positions is None else json.loads(_text(positions)),
        )

    async def commit(self, change: PaperCommit) -> None:
        if self._transaction is not None:
            await self._transaction(self._commands(change))
            return
        async with self._redis.pipeline(transaction=True) as pipe:  # MULTI ... EXEC
            for command in self._commands(change):
                pipe.execute_command(*command)
            await pipe.execute()

    async def begin_commit(self, change: PaperCommit) -> Awaitable[None]:
        if self._begin_transaction is None:
            await self.commit(change)
            return _done()
        return await self._begin_transaction(self._commands(change))  # type: ignore[return-value]

    def _commands(self, change: PaperCommit) -> list[list[Any]]:
        orders, fills, balances, positions = change.encoded()
        commands: list[list[Any]] = []
        if orders:
            commands.append(["HSET", self._orders_key, *[x for kv in orders.items() for x in kv]])
        if change.forget:
            commands.append(["HDEL", self._orders_key, *change.forget])
        if fills:
            commands.append(["RPUSH", self._fills_key, *fills])
            commands.append(["LTRIM", self._fills_key, -self._keep_fills, -1])
        commands.append(["SET", self._balances_key, balances])
        commands.append(["SET", self._positions_key, positions])
        return commands

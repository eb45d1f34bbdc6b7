"""Where the paper venue keeps its state, so the state outlives the process like an exchange's would.

Stored: every order the venue was ever sent (`PaperOrder.to_dict()`, keyed by client order id), every fill in the
order it happened (de-duplicated by fill_id when loaded), and the balances. `commit` writes one batch atomically.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis.asyncio import Redis

from wavesquant.execution.orders import fill_from_dict, fill_to_dict
from wavesquant.execution.venues.base import Fill


@dataclass(frozen=True, slots=True)
class PaperSnapshot:
    orders: list[dict[str, Any]]
    fills: list[Fill]  # unique by fill_id, oldest first
    balances: dict[str, float] | None  # None: never saved


class PaperStore(Protocol):
    async def load(self) -> PaperSnapshot: ...

    async def commit(
        self, orders: Sequence[Mapping[str, Any]], fills: Sequence[Fill], balances: Mapping[str, float]
    ) -> None:
        """Atomically: upsert `orders` by client order id, append `fills`, replace the balances."""
        ...

    async def begin_commit(
        self, orders: Sequence[Mapping[str, Any]], fills: Sequence[Fill], balances: Mapping[str, float]
    ) -> Awaitable[None]:
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

    def __init__(self) -> None:
        self._orders: dict[str, str] = {}
        self._fills: list[str] = []
        self._balances: str | None = None

    async def load(self) -> PaperSnapshot:
        return PaperSnapshot(
            orders=[json.loads(text) for text in self._orders.values()],
            fills=_unique([fill_from_dict(json.loads(text)) for text in self._fills]),
            balances=None if self._balances is None else json.loads(self._balances),
        )

    async def commit(
        self, orders: Sequence[Mapping[str, Any]], fills: Sequence[Fill], balances: Mapping[str, float]
    ) -> None:
        encoded, fill_texts, balance_text = _encoded(orders, fills, balances)
        self._orders.update(encoded)
        self._fills.extend(fill_texts)
        self._balances = balance_text

    async def begin_commit(
        self, orders: Sequence[Mapping[str, Any]], fills: Sequence[Fill], balances: Mapping[str, float]
    ) -> Awaitable[None]:
        await self.commit(orders, fills, balances)
        return _done()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisPaperStore:
    """Keys under `key_prefix`: `orders` (hash client order id -> JSON), `fills` (list of JSON, appended; a
    retried commit may append a fill twice, `load` keeps the first), `balances` (JSON string)."""

    def __init__(self, redis_client: Redis, key_prefix: str = "wq:paper:",
                 transaction: Callable[[list[list[Any]]], Awaitable[Any]] | None = None,
                 begin_transaction: Callable[[list[list[Any]]], Awaitable[Awaitable[Any]]] | None = None) -> None:
        self._redis = redis_client
        self._transaction = transaction  # the bus's raw MULTI/EXEC (fast path); redis-py's otherwise
        self._begin_transaction = begin_transaction  # the same, pipelined: in order with the bus's stream writes
        self._orders_key = f"{key_prefix}orders"
        self._fills_key = f"{key_prefix}fills"
        self._balances_key = f"{key_prefix}balances"

    async def load(self) -> PaperSnapshot:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._orders_key)
            pipe.lrange(self._fills_key, 0, -1)
            pipe.get(self._balances_key)
            orders, fills, balances = await pipe.execute()
        return PaperSnapshot(
            orders=[json.loads(_text(text)) for text in orders.values()],
            fills=_unique([fill_from_dict(json.loads(_text(text))) for text in fills]),
            balances=None if balances is None else json.loads(_text(balances)),
        )

    async def commit(
        self, orders: Sequence[Mapping[str, Any]], fills: Sequence[Fill], balances: Mapping[str, float]
    ) -> None:
        if self._transaction is not None:
            await self._transaction(self._commands(orders, fills, balances))
            return
        encoded, fill_texts, balances_text = _encoded(orders, fills, balances)
        async with self._redis.pipeline(transaction=True) as pipe:  # MULTI ... EXEC
            if encoded:
                pipe.hset(self._orders_key, mapping=encoded)  # type: ignore[arg-type]
            if fill_texts:
                pipe.rpush(self._fills_key, *fill_texts)
            pipe.set(self._balances_key, balances_text)
            await pipe.execute()

    async def begin_commit(
        self, orders: Sequence[Mapping[str, Any]], fills: Sequence[Fill], balances: Mapping[str, float]
    ) -> Awaitable[None]:
        if self._begin_transaction is None:
            await self.commit(orders, fills, balances)
            return _done()
        return await self._begin_transaction(self._commands(orders, fills, balances))  # type: ignore[return-value]

    def _commands(
        self, orders: Sequence[Mapping[str, Any]], fills: Sequence[Fill], balances: Mapping[str, float]
    ) -> list[list[Any]]:
        encoded, fill_texts, balances_text = _encoded(orders, fills, balances)
        commands: list[list[Any]] = []
        if encoded:
            commands.append(["HSET", self._orders_key, *[x for kv in encoded.items() for x in kv]])
        if fill_texts:
            commands.append(["RPUSH", self._fills_key, *fill_texts])
        commands.append(["SET", self._balances_key, balances_text])
        return commands


def _encoded(
    orders: Sequence[Mapping[str, Any]], fills: Sequence[Fill], balances: Mapping[str, float]
) -> tuple[dict[str, str], list[str], str]:
    """The JSON text stored for a commit: orders by client order id, fills, balances."""
    return (
        {_client_id(o): json.dumps(o, allow_nan=False) for o in orders},
        [json.dumps(fill_to_dict(f), allow_nan=False) for f in fills],
        json.dumps(dict(balances), allow_nan=False),
    )

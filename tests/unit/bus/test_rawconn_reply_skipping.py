"""Fire-and-forget commands on a raw connection: with CLIENT REPLY SKIP where the server takes it (the real
Redis case is in tests/integration/bus/test_redis_bus_live.py), and with replies skipped in order where it refuses
CLIENT (a proxy or managed service), so awaited replies still match their calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import hiredis
import pytest

from wavesquant.bus.rawconn import open_connection, tcp_connector
from wavesquant.bus.resp import RedisAddress, pack_command


class _RefusesClient(asyncio.Protocol):
    """Answers CLIENT SETNAME, ECHO and XACK like Redis; CLIENT REPLY is refused."""

    def __init__(self, seen: list[list[bytes]]) -> None:
        self.reader = hiredis.Reader()
        self.seen = seen

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (cmd := self.reader.gets()) is not False:
            self.seen.append(cmd)
            name = cmd[0].upper()
            if name == b"CLIENT" and cmd[1].upper() == b"REPLY":
                self.transport.write(b"-ERR unknown subcommand 'REPLY'\r\n")  # type: ignore[attr-defined]
            elif name == b"XACK":
                self.transport.write(b":%d\r\n" % (len(cmd) - 3))  # type: ignore[attr-defined]
            elif name == b"ECHO":
                self.transport.write(b"$%d\r\n%s\r\n" % (len(cmd[1]), cmd[1]))  # type: ignore[attr-defined]
            else:
                self.transport.write(b"+OK\r\n")  # type: ignore[attr-defined]


@pytest.fixture
async def refusing_server() -> AsyncIterator[tuple[RedisAddress, list[list[bytes]]]]:
    seen: list[list[bytes]] = []
    server = await asyncio.get_running_loop().create_server(lambda: _RefusesClient(seen), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield RedisAddress(port=port), seen
    server.close()
    await server.wait_closed()


async def test_where_client_reply_is_refused_sent_replies_are_skipped_in_order(
    refusing_server: tuple[RedisAddress, list[list[bytes]]],
) -> None:
    address, seen = refusing_server
    conn = await open_connection(tcp_connector(address, 2.0), address, "t", lambda r: None, lambda c, e: None, 2.0)
    try:
        assert await conn.allow_skipping_replies(2.0) is False
        conn.send([pack_command(b"XACK", b"s", b"g", b"1-0", b"2-0"), pack_command(b"XACK", b"s", b"g", b"3-0")])
        assert await conn.call([pack_command(b"ECHO", b"mine")], 2.0) == [b"mine"]  # not an XACK's count
        assert [c[0] for c in seen if c[0] == b"XACK"] == [b"XACK", b"XACK"]
        assert [c for c in seen if c[:2] == [b"CLIENT", b"REPLY"]] == [[b"CLIENT", b"REPLY", b"ON"]]  # no SKIP
    finally:
        await conn.aclose()

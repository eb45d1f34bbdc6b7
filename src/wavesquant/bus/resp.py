"""RESP2 wire helpers for the raw pub/sub connections: command encoding, the pipelined PUBLISH encoder and
Redis URL parsing. Pure functions, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

Arg = bytes | str | int


def _to_bytes(arg: Arg) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    return b"%d" % arg


def pack_command(*args: Arg) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = _to_bytes(arg)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


CLIENT_REPLY_SKIP = pack_command(b"CLIENT", b"REPLY", b"SKIP")  # Redis will not answer the next command
CLIENT_REPLY_ON = pack_command(b"CLIENT", b"REPLY", b"ON")  # the default; answered "OK" where CLIENT REPLY is taken


def publish_header(key: bytes) -> bytes:
    """Everything of `PUBLISH key payload` up to the payload's length line; precomputed per channel."""
    return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n" % (len(key), key)


def xadd_header(key: bytes, maxlen: int) -> bytes:
    """Everything of `XADD key MAXLEN ~ maxlen * d payload` before the payload's length line."""
    return pack_command(b"XADD", key, b"MAXLEN", b"~", maxlen, b"*", b"d", b"")[: -len(b"$0\r\n\r\n")]


def xack_header(key: bytes, group: bytes) -> bytes:
    """`XACK key group` without its array length (which depends on how many ids follow)."""
    return pack_command(b"XACK", key, group)[len(b"*3\r\n"):]


def encode_xack(header: bytes, entry_ids: list[str] | tuple[str, ...]) -> bytes:
    """One XACK of `entry_ids` (header from `xack_header`)."""
    ids = b"".join(b"$%d\r\n%s\r\n" % (len(e), e.encode()) for e in entry_ids)
    return b"*%d\r\n%s%s" % (3 + len(entry_ids), header, ids)


def encode_publishes(items: list[tuple[bytes, bytes]]) -> bytes:
    """Pipelined PUBLISH commands for `(header, payload)` pairs (header from `publish_header`), one buffer."""
    parts: list[bytes] = []
    append = parts.append
    for header, payload in items:
        append(header)
        append(b"$%d\r\n" % len(payload))
        append(payload)
        append(b"\r\n")
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where and how to connect: TCP host/port or a unix socket path, credentials, database, TLS."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: bool = False

    def handshake(self, client_name: str) -> list[bytes]:
        """Commands a fresh connection sends before anything else: AUTH (when the URL has a password) and
        CLIENT SETNAME. Pub/sub is database-independent, so no SELECT."""
        cmds: list[bytes] = []
        if self.password is not None:
            if self.username:
                cmds.append(pack_command("AUTH", self.username, self.password))
            else:
                cmds.append(pack_command("AUTH", self.password))
        if client_name:
            cmds.append(pack_command("CLIENT", "SETNAME", client_name))
        return cmds

    def describe(self) -> str:
        """For logs: never includes the password."""
        where = self.path if self.path else f"{self.host}:{self.port}"
        return f"{'rediss' if self.tls else 'redis'}://{where}/{self.db}"


def parse_redis_url(url: str) -> RedisAddress:
    """redis://[[user]:password@]host[:port][/db], rediss://... (TLS), unix://[[user]:pass@]/path[?db=N]."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}: use redis://, rediss:// or unix://")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    db = 0
    query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
    if "db" in query:
        db = int(query["db"])
    if scheme == "unix":
        if not parts.path:
            raise ValueError(f"unix:// URL without a socket path: {url!r}")
        return RedisAddress(path=unquote(parts.path), username=username, password=password, db=db)
    path = parts.path.lstrip("/")
    if path:
        db = int(path)
    return RedisAddress(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        username=username,
        password=password,
        db=db,
        tls=scheme == "rediss",
    )

"""Unique, time-ordered identifiers for messages and orders."""

from __future__ import annotations

import hashlib
import itertools
import os
import time

_counter = itertools.count()
_node = os.urandom(3).hex()


def new_msg_id() -> str:
    """26 hex chars: wall-clock ns (16) + per-process node (6) + counter (4). Sorts by creation time."""
    return f"{time.time_ns():016x}{_node}{next(_counter) & 0xFFFF:04x}"


def client_order_id(signal_id: str, leg: int = 0) -> str:
    """Deterministic client order id for a signal's order leg: the same signal always maps to the same id,
    so a re-routed or redelivered signal can never create a second order. 32 chars, safe for every venue."""
    digest = hashlib.blake2b(f"{signal_id}:{leg}".encode(), digest_size=14).hexdigest()
    return f"wq{digest}"

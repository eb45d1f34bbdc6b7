"""Shared test fixtures.

Tests that need the real Redis or ../shared/data skip with a clear reason when those are absent, and FAIL
instead when CI=true, so CI can never pass by skipping its integration tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("WQ_SHARED_DIR", REPO_ROOT.parent / "shared"))
SHARED_DATA = SHARED_DIR / "data"
REDIS_URL = os.environ.get("WQ_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and {reason}: integration tests must not be skipped in CI")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data (real recorded market data)."""
    if not (SHARED_DATA / "README.md").is_file():
        _unavailable(f"shared data not found at {SHARED_DATA} (set WQ_SHARED_DIR)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        _unavailable(f"shared dir not found at {SHARED_DIR} (set WQ_SHARED_DIR)")
    return SHARED_DIR


def _redis_up() -> bool:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
        ok = bool(client.ping())
        client.close()
        return ok
    except Exception:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the real Redis; skip (fail in CI) when it does not answer."""
    if not _redis_up():
        _unavailable(f"Redis does not answer at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A random key/channel prefix for one test; every key under it is deleted afterwards."""
    import redis

    prefix = f"wqtest{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
async def fake_redis() -> AsyncIterator[object]:
    """An asyncio fakeredis client for unit tests."""
    import fakeredis

    client = fakeredis.FakeAsyncRedis()
    yield client
    await client.aclose()

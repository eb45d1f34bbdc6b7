"""Fixtures for the system tests: one running system (seven processes over the real Redis) per test module,
under a module-scoped random key prefix whose keys are all deleted afterwards. A failing test's report gets
the tails of every agent's log."""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
import redis

from support.agents_procs import REPLAY_FILE, AgentSystem, RedisState, system_settings, write_config


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    system = getattr(item, "funcargs", {}).get("system")
    if report.failed and isinstance(system, AgentSystem):
        report.sections.append(("agent logs (tails)", system.log_tails(40)))
    return report


@pytest.fixture(scope="module")
def system_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"wqsys{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="module")
def system(
    redis_url: str, system_prefix: str, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentSystem]:
    """The seven agents running as processes; stopped when the module is done with SIGTERM (SIGKILL after a
    timeout), and each must then have exited cleanly (status 0)."""
    workdir = tmp_path_factory.mktemp("system")
    config = write_config(workdir / "config.yaml", system_settings(shared_data / REPLAY_FILE))
    with AgentSystem(config, redis_url, system_prefix, workdir) as running:
        yield running
        codes = running.stop()
    unclean = {name: code for name, code in codes.items() if code != 0}
    assert not unclean, (
        f"agents did not exit cleanly on SIGTERM (None: killed after the timeout): {unclean}\n"
        f"{running.log_tails(15)}"
    )


@pytest.fixture(scope="module")
def state(redis_url: str, system_prefix: str) -> Iterator[RedisState]:
    client = redis.Redis.from_url(redis_url)
    yield RedisState(client, system_prefix)
    client.close()

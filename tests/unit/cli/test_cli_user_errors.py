"""User errors on the command line: exit 2 (or non-zero), one clear message, never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from wavesquant.cli import app

WQ = Path(sys.executable).parent / "wq"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def one_message(text: str) -> str:
    """The message with Rich's line wrapping undone."""
    return " ".join(text.split())


def assert_clean_failure(result: Result, code: int, *needles: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    message = one_message(result.stderr)
    assert message.startswith("error: "), message
    for needle in needles:
        assert needle in message, (needle, message)


def test_unknown_agent() -> None:
    assert_clean_failure(invoke("agent", "run", "nosuch"), 2, "unknown agent 'nosuch'", "data_feeds", "core")


def test_unknown_agent_for_control_and_health() -> None:
    assert_clean_failure(invoke("agent", "stop", "nosuch"), 2, "unknown agent 'nosuch'")
    assert_clean_failure(invoke("agent", "health", "nosuch"), 2, "unknown agent 'nosuch'")


def test_missing_replay_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert_clean_failure(invoke("run", "--replay", "missing.csv"), 2, "replay file not found: missing.csv")


def test_replay_file_name_too_long(tmp_path: Path) -> None:
    assert_clean_failure(invoke("run", "--replay", str(tmp_path / ("x" * 300 + ".csv"))), 2, "replay file")


def test_unknown_channel() -> None:
    assert_clean_failure(invoke("channels", "tail", "nosuch"), 2, "unknown channel 'nosuch'", "hft_signals",
                         "deadletter")


def test_bad_config_file_for_a_command(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("bus:\n  backend: kafka\n")
    assert_clean_failure(invoke("run", "-c", str(bad), "--duration", "1"), 2, "bus.backend")


def test_no_arguments_shows_help() -> None:
    result = invoke()
    assert "agent" in result.output and "schema" in result.output
    assert "Traceback" not in result.output


def test_error_message_is_a_single_line() -> None:
    long_path = "/no/such/dir/" + "/".join(["abcdefgh"] * 400) + ".csv"  # 3600 chars: wider than any terminal
    missing = invoke("run", "--replay", long_path)
    assert missing.exit_code == 2
    assert len(missing.stderr.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def control_without_redis() -> tuple[subprocess.CompletedProcess[str], float]:
    """`wq agent stop risk` against a port where nothing listens, as a real process (the CLI installs uvloop
    process-wide, which must not leak into other tests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WQ_") and k != "COLUMNS"}
    t0 = time.monotonic()
    proc = subprocess.Popen([str(WQ), "agent", "stop", "risk", "--redis", "redis://127.0.0.1:1/0", "--timeout", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), time.monotonic() - t0


def test_control_without_redis_fails_cleanly(
        control_without_redis: tuple[subprocess.CompletedProcess[str], float]) -> None:
    proc, _ = control_without_redis
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout.strip() == ""  # no log noise: the error is all the user sees
    message = one_message(proc.stderr)
    assert message.startswith("error: cannot reach the bus")
    assert "127.0.0.1:1" in message


def test_control_without_redis_gives_up_within_its_timeout(
        control_without_redis: tuple[subprocess.CompletedProcess[str], float]) -> None:
    _, elapsed = control_without_redis
    assert elapsed < 8.0  # --timeout 1, plus generous start-up time

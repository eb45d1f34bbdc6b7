"""A real-money configuration does not trade from the config alone: `wq agent run execution` refuses it with a
one-line error (exit 2) when the process was not started with --live and confirmed - even with credentials
and the WQ_CONFIRM_LIVE preset in the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wavesquant.execution.live import CONFIRM_ENV

WQ = Path(sys.executable).with_name("wq")


@pytest.mark.timeout(60)
def test_live_config_without_the_live_flag_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "live.yaml"
    config.write_text(yaml.safe_dump({
        # never contacted: the agent is refused while it is being built, before the bus starts
        "bus": {"backend": "redis", "url": "redis://127.0.0.1:6379/0", "prefix": "wqlive-refused:"},
        "execution": {"venue": "ccxt", "ccxt": {"exchange_id": "binance", "sandbox": False, "live": True}},
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WQ_")}
    env.update({"WQ_BINANCE_API_KEY": "k", "WQ_BINANCE_SECRET": "s", CONFIRM_ENV: "binance", "COLUMNS": "500"})
    done = subprocess.run([str(WQ), "agent", "run", "execution", "--config", str(config)], env=env, cwd=tmp_path,
                          check=False, capture_output=True, text=True, timeout=50, stdin=subprocess.DEVNULL)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith("error:") and "needs the --live flag" in lines[0]

"""`wq config validate` and `wq config show`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from wavesquant.cli import app
from wavesquant.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("WQ_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def test_validate_bad_file_exits_2_naming_every_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("risk:\n  limits:\n    max_order_notional: -1\nbogus: 1\n")
    result = CliRunner().invoke(app, ["config", "validate", "-c", str(bad)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stdout == ""
    text = " ".join(result.stderr.split())
    assert text.startswith("error: ")
    assert "risk.limits.max_order_notional: Input should be greater than 0 (got -1)" in text
    assert "bogus: Extra inputs are not permitted" in text


def test_validate_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("bus: [\n")
    result = CliRunner().invoke(app, ["config", "validate", "--config", str(bad)])
    assert result.exit_code == 2
    assert "not valid YAML" in " ".join(result.stderr.split())
    missing = CliRunner().invoke(app, ["config", "validate", "-c", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
    assert "not found: pass an existing file" in " ".join(missing.stderr.split())
    assert "Traceback" not in result.output + missing.output


def test_validate_good_files() -> None:
    result = CliRunner().invoke(app, ["config", "validate", "-c", str(REPO_ROOT / "config" / "default.yaml")])
    assert result.exit_code == 0, result.output
    assert "configuration is valid" in result.stdout
    assert CliRunner().invoke(app, ["config", "validate"]).exit_code == 0  # no file: defaults


def test_show_prints_the_effective_configuration_as_yaml(tmp_path: Path) -> None:
    cfg = tmp_path / "wq.yaml"
    cfg.write_text("risk:\n  limits:\n    max_order_notional: 777\n")
    result = CliRunner().invoke(app, ["config", "show", "-c", str(cfg)], env={"WQ_BUS__BACKEND": "redis"})
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    assert shown["bus"]["backend"] == "redis"  # env override
    assert shown["risk"]["limits"]["max_order_notional"] == 777  # file
    assert shown["heartbeat"] == {"interval_s": 1.0, "ttl_s": 10}  # defaults
    assert set(shown) == set(Settings.model_fields)
    # what `show` prints is itself a valid configuration file
    again = tmp_path / "shown.yaml"
    again.write_text(result.stdout)
    assert CliRunner().invoke(app, ["config", "validate", "-c", str(again)]).exit_code == 0

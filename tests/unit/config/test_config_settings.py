"""Configuration: defaults, YAML files, `WQ_...` environment overrides, and user-facing errors (ConfigError with
one line per problem naming the key)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from wavesquant.config import LOOPS, ConfigError, Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_YAML = REPO_ROOT / "config" / "default.yaml"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No WQ_ variables from the outer environment, and no config/default.yaml in the working directory."""
    import os

    for key in list(os.environ):
        if key.startswith("WQ_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "wq.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return str(exc.value).splitlines()


def test_defaults_load_without_any_file() -> None:
    s = load_settings()
    assert s == Settings()
    assert s.bus.backend == "embedded"
    assert s.bus.prefix == "wq:"
    assert s.execution.venue == "paper"
    assert s.execution.ccxt.live is False  # never live by default
    assert s.risk.limits.max_order_notional == 10_000.0
    assert [x.id for x in s.strategy_engine.strategies] == ["trend_btc", "trend_eth"]


def test_every_default_loop_interval_lies_in_its_tier() -> None:
    s = Settings()
    for agent, loops in LOOPS.items():
        for name, (tier, default) in loops.items():
            lo, hi = tier.interval_range_s
            assert lo <= default <= hi, (agent, name)
            assert s.loop_interval(agent, name) == default


def test_the_shipped_default_yaml_is_valid() -> None:
    s = load_settings(DEFAULT_YAML)
    assert s.loop_interval("intelligence", "trend_intelligence") == 1.0
    assert s.loop_interval("core", "agent_health_monitoring") == 2.0
    assert s.loop_interval("core", "signal_routing") == LOOPS["core"]["signal_routing"][1]
    assert s.strategy_engine.strategies[0].params["fast"] == 3


def test_default_yaml_is_picked_up_from_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    assert load_settings().loop_interval("core", "agent_health_monitoring") == 2.0


def test_yaml_file_values_and_defaults_merge(tmp_path: Path) -> None:
    path = write(tmp_path, """
bus:
  backend: redis
  url: redis://10.0.0.1:6380/2
risk:
  limits:
    max_order_notional: 2500
execution:
  loops:
    fast_execution: 0.5
""")
    s = load_settings(path)
    assert (s.bus.backend, s.bus.url, s.bus.prefix) == ("redis", "redis://10.0.0.1:6380/2", "wq:")
    assert s.risk.limits.max_order_notional == 2500
    assert s.risk.limits.max_gross_exposure == 100_000.0  # untouched default
    assert s.loop_interval("execution", "fast_execution") == 0.5
    assert s.loop_interval("execution", "hft_execution") == 0.010


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "")) == Settings()


def test_env_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "bus:\n  backend: embedded\n  prefix: 'custom:'\nlogging:\n  level: debug\n")
    monkeypatch.setenv("WQ_BUS__BACKEND", "redis")
    monkeypatch.setenv("WQ_LOGGING__JSON_OUTPUT", "true")
    s = load_settings(path)
    assert s.bus.backend == "redis"
    assert s.bus.prefix == "custom:"  # the rest of the file's section survives (deep merge)
    assert s.logging.json_output is True
    assert s.logging.level == "debug"


def test_env_override_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WQ_BUS__BACKEND", "redis")
    monkeypatch.setenv("WQ_RISK__LIMITS__MAX_ORDER_NOTIONAL", "123.5")
    s = load_settings()
    assert s.bus.backend == "redis"
    assert s.risk.limits.max_order_notional == 123.5


def test_invalid_env_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WQ_BUS__BACKEND", "kafka")
    with pytest.raises(ConfigError) as e:
        load_settings()
    assert problems(e) == [line for line in problems(e) if line.startswith("bus.backend: ")]
    assert "kafka" in str(e.value)


def test_explicit_overrides_win(tmp_path: Path) -> None:
    path = write(tmp_path, "bus:\n  backend: embedded\n")
    s = load_settings(path, {"bus.backend": "redis", "bus.url": "redis://h:1/0",
                             "data_feeds.replay.bars_per_second": 7.5})
    assert (s.bus.backend, s.bus.url) == ("redis", "redis://h:1/0")
    assert s.data_feeds.replay.bars_per_second == 7.5


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.bus = s.bus  # type: ignore[misc]
    with pytest.raises(ValidationError):
        s.bus.backend = "redis"  # type: ignore[misc]


def test_each_problem_is_one_line_naming_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, """
risk:
  limits:
    max_order_notional: -1
    nope: 3
bogus: 1
heartbeat:
  ttl_s: 1
bus:
  backend: kafka
""")
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    lines = problems(e)
    assert len(lines) == 5
    assert all(line.startswith(f"{path}: ") for line in lines)
    keyed = {line.removeprefix(f"{path}: ").split(":")[0]: line for line in lines}
    assert set(keyed) == {"risk.limits.max_order_notional", "risk.limits.nope", "bogus", "heartbeat.ttl_s",
                          "bus.backend"}
    assert "greater than 0" in keyed["risk.limits.max_order_notional"]
    assert "(got -1)" in keyed["risk.limits.max_order_notional"]
    assert "Extra inputs are not permitted" in keyed["bogus"]
    assert "'kafka'" in keyed["bus.backend"]


@pytest.mark.parametrize("agent,loop,value,tier", [
    ("intelligence", "trend_intelligence", 100.0, "tactical"),
    ("core", "signal_routing", 0.05, "fast"),
    ("data_feeds", "hft_data_feeds", 0.5, "hft"),
    ("market_conditions", "strange_behavior_analyzer", 7200, "strategic"),
])
def test_loop_interval_outside_its_tier_is_refused(tmp_path: Path, agent: str, loop: str, value: float,
                                                    tier: str) -> None:
    path = write(tmp_path, f"{agent}:\n  loops:\n    {loop}: {value}\n")
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    text = str(e.value)
    assert f"{agent}.loops.{loop}" in text
    assert f"outside the {tier} tier" in text


def test_unknown_loop_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"risk\.loops\.warp_drive: unknown loop"):
        load_settings(write(tmp_path, "risk:\n  loops:\n    warp_drive: 1.0\n"))


def test_each_loop_problem_is_its_own_line(tmp_path: Path) -> None:
    path = write(tmp_path, "intelligence:\n  loops:\n    trend_intelligence: 100\ncore:\n  loops:\n"
                           "    signal_routing: 5\n")
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    lines = problems(e)
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}: intelligence.loops.trend_intelligence: ")
    assert lines[1].startswith(f"{path}: core.loops.signal_routing: ")


def test_loop_problems_are_reported_with_field_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "risk:\n  limits:\n    max_order_notional: -1\n  loops:\n    warp_drive: 1.0\n")
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    assert "risk.limits.max_order_notional" in str(e.value)
    assert "risk.loops.warp_drive" in str(e.value)


def test_other_cross_field_rules(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="duplicate strategy ids"):
        load_settings(write(tmp_path, "strategy_engine:\n  strategies:\n    - {id: a, kind: ma_crossover}\n"
                                      "    - {id: a, kind: ma_crossover}\n"))
    with pytest.raises(ConfigError, match="2 symbols but 1 start_prices"):
        load_settings(write(tmp_path, "data_feeds:\n  synthetic:\n    symbols: [BTC/USDT, ETH/USDT]\n"
                                      "    start_prices: [1.0]\n"))


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bus:\n  backend: redis\n  url: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    assert len(problems(e)) == 1
    assert str(e.value).startswith(f"{path}: not valid YAML at line ")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(write(tmp_path, "- bus\n- risk\n"))


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as e:
        load_settings(missing)
    assert problems(e) == [f"config file {missing} not found: pass an existing file with --config"]


def test_wrong_section_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(write(tmp_path, "bus: 5\n"))
    assert problems(e)[0].startswith(f"{tmp_path / 'wq.yaml'}: bus: ")


def test_unparsable_env_section_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WQ_BUS", "redis")
    with pytest.raises(ConfigError, match="bus"):
        load_settings()


def test_unknown_env_key_inside_a_section_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WQ_BUS__BACKEN", "redis")  # typo
    with pytest.raises(ConfigError) as e:
        load_settings()
    assert problems(e) == ["bus.backen: Extra inputs are not permitted (got 'redis')"]

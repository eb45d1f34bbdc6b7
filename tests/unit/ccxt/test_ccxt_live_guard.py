"""The live-trading guard: config + --live flag + the operator's confirmation, or nothing trades real money."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from wavesquant.config import Settings
from wavesquant.execution.live import (
    CONFIRM_ENV,
    LiveTradingRefused,
    forget_live_confirmations,
    is_live_confirmed,
    require_live_confirmation,
    wants_real_money,
)


@pytest.fixture(autouse=True)
def _no_confirmations() -> Iterator[None]:
    forget_live_confirmations()
    yield
    forget_live_confirmations()


def settings(venue: str = "ccxt", exchange: str = "binance", sandbox: bool = False, live: bool = True) -> Settings:
    return Settings(execution={"venue": venue, "ccxt": {"exchange_id": exchange, "sandbox": sandbox, "live": live}})


class Prompt:
    """An operator at the terminal: answers `answer`, remembers what was asked."""

    def __init__(self, answer: str | BaseException) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def __call__(self, text: str) -> str:
        self.asked.append(text)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def test_operator_typing_the_exchange_id_confirms_for_this_process() -> None:
    prompt = Prompt(" binance\n")
    require_live_confirmation(settings(), True, prompt, env={})
    assert is_live_confirmed("binance") and not is_live_confirmed("kraken")
    assert len(prompt.asked) == 1 and "REAL MONEY" in prompt.asked[0] and "binance" in prompt.asked[0]


@pytest.mark.parametrize("answer", ["", "yes", "y", "Binance", "kraken", EOFError(), KeyboardInterrupt()])
def test_anything_but_the_exchange_id_refuses(answer: Any) -> None:
    with pytest.raises(LiveTradingRefused, match="not confirmed"):
        require_live_confirmation(settings(), True, Prompt(answer), env={})
    assert not is_live_confirmed("binance")


def test_env_confirmation_for_non_interactive_deployments() -> None:
    prompt = Prompt("never asked")
    require_live_confirmation(settings(), True, prompt, env={CONFIRM_ENV: "binance"})
    assert is_live_confirmed("binance") and prompt.asked == []

    forget_live_confirmations()
    with pytest.raises(LiveTradingRefused, match="does not match"):  # a wrong preset refuses, it does not prompt
        require_live_confirmation(settings(), True, Prompt("binance"), env={CONFIRM_ENV: "kraken"})
    with pytest.raises(LiveTradingRefused, match=f"{CONFIRM_ENV}=binance"):  # no TTY and no preset
        require_live_confirmation(settings(), True, None, env={})
    assert not is_live_confirmed("binance")


@pytest.mark.parametrize(
    ("cfg", "live_flag", "message"),
    [
        (settings(), False, "--live flag"),
        (settings(venue="paper"), True, "execution.venue: ccxt"),
        (settings(live=False), True, "execution.ccxt.live: true"),
        (settings(sandbox=True), True, "sandbox: false"),
    ],
)
def test_every_condition_is_required(cfg: Settings, live_flag: bool, message: str) -> None:
    # even with the operator's word and the env preset, a missing condition refuses
    with pytest.raises(LiveTradingRefused, match=message):
        require_live_confirmation(cfg, live_flag, Prompt("binance"), env={CONFIRM_ENV: "binance"})
    assert not is_live_confirmed("binance")


def test_refusal_is_a_one_line_value_error() -> None:
    with pytest.raises(ValueError) as info:  # the CLI prints ValueErrors as one line
        require_live_confirmation(settings(), True, None, env={})
    assert "\n" not in str(info.value)


def test_wants_real_money() -> None:
    assert wants_real_money(settings())
    assert wants_real_money(settings(sandbox=False, live=False))  # half-asked: still refused later
    assert not wants_real_money(settings(sandbox=True, live=False))
    assert not wants_real_money(settings(venue="paper"))

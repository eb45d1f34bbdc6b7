"""The live-trading guard: real money moves only when three independent things agree.

1. the configuration: ``execution.venue: ccxt``, ``execution.ccxt.live: true`` and
   ``execution.ccxt.sandbox: false``;
2. the command line: the process was started with ``--live``;
3. the operator: typed the exchange id at the prompt, or (non-interactive deployments) set
   ``WQ_CONFIRM_LIVE=<exchange id>`` in the environment.

`require_live_confirmation` checks all three and records the confirmation for this process;
`venue_factory.build_venue` refuses to build a real-money venue for an exchange this process has not
confirmed.
The record lives in process memory only: every process (``wq run --live``, ``wq agent run execution --live``)
confirms for itself, and nothing an agent reads from the bus or the config alone can switch it on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import structlog

from wavesquant.config import Settings

log = structlog.get_logger(__name__)

CONFIRM_ENV = "WQ_CONFIRM_LIVE"

_confirmed: set[str] = set()


class LiveTradingRefused(ValueError):
    """Live trading was asked for but not every condition holds; str() is one line for the operator."""


def wants_real_money(settings: Settings) -> bool:
    """Does this configuration ask for a venue that trades real money (or half-ask, by a contradiction)?"""
    execution = settings.execution
    return execution.venue == "ccxt" and (execution.ccxt.live or not execution.ccxt.sandbox)


def confirmation_prompt(exchange_id: str) -> str:
    return (f"LIVE TRADING: orders will go to {exchange_id} with REAL MONEY. "
            f"Type the exchange id ({exchange_id}) to continue: ")


def require_live_confirmation(
    settings: Settings,
    live_flag: bool,
    confirm: Callable[[str], str] | None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Raise LiveTradingRefused unless the config asks for live ccxt trading off the sandbox, `live_flag` (the
    ``--live`` option) is set, and the operator confirmed: `confirm(prompt)` returned the exchange id, or
    ``WQ_CONFIRM_LIVE`` equals it (checked first; a different value refuses rather than prompting).
    `confirm` None means nobody can answer (no TTY). On success this process may build the live venue."""
    execution = settings.execution
    ccxt = execution.ccxt
    if not live_flag:
        raise LiveTradingRefused("live trading needs the --live flag on the command line")
    if execution.venue != "ccxt":
        raise LiveTradingRefused(f"--live needs execution.venue: ccxt (it is {execution.venue!r})")
    if not ccxt.live:
        raise LiveTradingRefused("--live needs execution.ccxt.live: true in the configuration")
    if ccxt.sandbox:
        raise LiveTradingRefused("--live needs execution.ccxt.sandbox: false "
                                 "(the sandbox trades no real money)")
    exchange = ccxt.exchange_id
    source = os.environ if env is None else env
    preset = (source.get(CONFIRM_ENV) or "").strip()
    if preset:
        if preset != exchange:
            raise LiveTradingRefused(
                f"{CONFIRM_ENV}={preset!r} does not match the configured exchange {exchange!r}"
            )
    elif confirm is None:
        raise LiveTradingRefused(
            f"live trading on {exchange} needs confirmation: run it from a terminal and type the "
            f"exchange id, or set {CONFIRM_ENV}={exchange}"
        )
    else:
        try:
            answer = confirm(confirmation_prompt(exchange))
        except (EOFError, KeyboardInterrupt):
            raise LiveTradingRefused("live trading not confirmed (no answer)") from None
        if answer.strip() != exchange:
            raise LiveTradingRefused(
                f"live trading not confirmed: expected {exchange!r}, got {answer.strip()!r}"
            )
    _confirmed.add(exchange)
    log.warning("live_trading_confirmed", exchange=exchange, via=CONFIRM_ENV if preset else "prompt")


def is_live_confirmed(exchange_id: str) -> bool:
    """Has this process confirmed live trading on `exchange_id` (through require_live_confirmation)?"""
    return exchange_id in _confirmed


def forget_live_confirmations() -> None:
    """Drop every confirmation of this process (tests; a supervisor switching back to the sandbox)."""
    _confirmed.clear()

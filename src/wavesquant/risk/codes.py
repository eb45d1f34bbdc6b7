"""Coded reasons why the risk layer refused an order."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class DenialCode(StrEnum):
    ORDER_SIZE = "order_size"
    NOTIONAL = "notional"
    POSITION_SYMBOL = "position_symbol"
    POSITION_STRATEGY = "position_strategy"
    GROSS_EXPOSURE = "gross_exposure"
    NET_EXPOSURE = "net_exposure"
    FAMILY_BUDGET = "family_budget"
    PRICE_BAND = "price_band"
    ORDER_RATE = "order_rate"
    DUPLICATE_ORDER = "duplicate_order"
    SELF_TRADE = "self_trade"
    STALE_MARKET_DATA = "stale_market_data"
    NO_MARKET_DATA = "no_market_data"
    EXPIRED_SIGNAL = "expired_signal"
    STALE_SIGNAL = "stale_signal"
    KILL_SWITCH = "kill_switch"  # trading state is HALTED
    REDUCING_ONLY = "reducing_only"  # trading state is REDUCING and the order would increase |position|
    LEVERAGE = "leverage"
    MARGIN = "margin"
    INVALID_ORDER = "invalid_order"


@dataclass(frozen=True, slots=True)
class Denial:
    """One refused check: a code for machines and a one-line message naming the numbers for people."""

    code: DenialCode
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def money(value: float) -> str:
    """A notional for messages: thousands separators, two decimals ("12,345.00")."""
    return f"{value:,.2f}"


def num(value: float) -> str:
    """A quantity or price for messages: up to 8 decimals, trailing zeros dropped ("0.015", "1,200")."""
    if not math.isfinite(value):
        return str(value)
    text = f"{value:,.8f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text

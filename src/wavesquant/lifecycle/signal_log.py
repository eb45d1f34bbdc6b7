"""Signals from the event log: replay `signal_event` entries into a signal book (core rebuilds its book from
this at start; `wq signals` shows it)."""

from __future__ import annotations

from wavesquant.core.ids import client_order_id
from wavesquant.lifecycle.signals import SignalBook, SignalTransition
from wavesquant.messages import SignalEvent, SignalStep


def _transition_of(step: SignalStep) -> SignalTransition:
    return SignalTransition(step.signal_id, step.from_state, step.to_state, step.ts_ms, step.reason,
                            step.signal_type, step.strategy_id, step.symbol)


def replay(book: SignalBook, msg: SignalEvent) -> int:
    """Apply one logged entry's steps to `book`; returns how many."""
    for step in msg.steps:
        book.apply_transition(_transition_of(step), expires_at_ms=step.signal_expires_at_ms,
                              client_order_id=client_order_id(step.signal_id))
    return len(msg.steps)

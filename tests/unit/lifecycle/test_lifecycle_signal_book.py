"""SignalBook: the signal lifecycle state machine, implied jumps, refusals, expiry, capacity and event-sourced
rebuild; plus a property test that no sequence of advances can break the transition rules."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wavesquant.lifecycle.signals import IllegalSignalTransition, SignalBook, SignalTransition, path_to
from wavesquant.types import SignalState as S

ALL = list(S)


def book_with(signal_id: str = "s1", expires_at_ms: int | None = None, capacity: int = 100) -> SignalBook:
    book = SignalBook(capacity)
    book.generate(signal_id, "trend_signal", 1_000, expires_at_ms, "trend_btc", "BTC/USDT", f"wq-{signal_id}")
    return book


def states(transitions: list[SignalTransition]) -> list[tuple[S | None, S]]:
    return [(t.from_state, t.to_state) for t in transitions]


def test_generate_records_the_signal() -> None:
    book = SignalBook()
    out = book.generate("s1", "trend_signal", 1_000, 6_000, "trend_btc", "BTC/USDT", "wq-s1")
    assert states(out) == [(None, S.GENERATED)]
    assert (out[0].signal_type, out[0].strategy_id, out[0].symbol, out[0].ts_ms) == (
        "trend_signal", "trend_btc", "BTC/USDT", 1_000)
    sig = book.get("s1")
    assert sig is not None
    assert (sig.state, sig.created_ms, sig.expires_at_ms, sig.updated_ms) == (S.GENERATED, 1_000, 6_000, 1_000)
    assert book.by_client_order_id("wq-s1") is sig
    assert book.by_client_order_id("nope") is None
    assert len(book) == 1


def test_duplicate_generate_is_ignored() -> None:
    book = book_with()
    book.advance("s1", S.EVALUATING, 1_001)
    assert book.generate("s1", "trend_signal", 2_000, None) == []
    sig = book.get("s1")
    assert sig is not None and sig.state is S.EVALUATING and sig.created_ms == 1_000
    assert len(sig.history) == 2


def test_the_whole_main_path_step_by_step() -> None:
    book = book_with()
    path = [S.EVALUATING, S.APPROVED, S.EXECUTING, S.EXECUTED, S.LEARNED]
    prev = S.GENERATED
    for i, target in enumerate(path):
        out = book.advance("s1", target, 2_000 + i, reason=f"r{i}")
        assert states(out) == [(prev, target)]
        assert out[0].reason == f"r{i}"
        prev = target
    sig = book.get("s1")
    assert sig is not None and sig.updated_ms == 2_004
    assert [t.to_state for t in sig.history] == [S.GENERATED, *path]


@pytest.mark.parametrize("start,target", [(S.EVALUATING, S.BLOCKED), (S.GENERATED, S.EXPIRED),
                                          (S.EVALUATING, S.EXPIRED), (S.APPROVED, S.EXPIRED),
                                          (S.EXECUTING, S.EXPIRED), (S.BLOCKED, S.LEARNED),
                                          (S.EXPIRED, S.LEARNED), (S.EXECUTED, S.LEARNED)])
def test_side_branches(start: S, target: S) -> None:
    book = book_with()
    if start is not S.GENERATED:
        assert book.advance("s1", start, 1_500)  # every state is reachable from generated
    assert book.get("s1").state is start  # type: ignore[union-attr]
    out = book.advance("s1", target, 2_000, "why")
    assert out[-1].to_state is target and out[-1].reason == "why"
    assert book.refused == 0


def test_execution_ack_before_risk_approval_records_the_skipped_states() -> None:
    book = book_with()
    out = book.advance("s1", S.EXECUTING, 3_000, "venue ack")
    assert states(out) == [(S.GENERATED, S.EVALUATING), (S.EVALUATING, S.APPROVED), (S.APPROVED, S.EXECUTING)]
    assert [t.reason for t in out] == ["implied by executing", "implied by executing", "venue ack"]
    assert all(t.ts_ms == 3_000 for t in out)
    # the late risk approval is then a refused backwards move, not a state change
    assert book.advance("s1", S.APPROVED, 3_001) == []
    assert book.get("s1").state is S.EXECUTING  # type: ignore[union-attr]
    assert book.refused == 1


def test_block_from_generated_implies_evaluating() -> None:
    book = book_with()
    out = book.advance("s1", S.BLOCKED, 2_000, "max_order_notional")
    assert states(out) == [(S.GENERATED, S.EVALUATING), (S.EVALUATING, S.BLOCKED)]
    assert out[-1].reason == "max_order_notional"


@pytest.mark.parametrize("reach,illegal", [
    ([S.APPROVED], S.BLOCKED), ([S.APPROVED], S.GENERATED), ([S.EXECUTING], S.EVALUATING),
    ([S.EXECUTED], S.EXPIRED), ([S.EXECUTED], S.BLOCKED), ([S.BLOCKED], S.APPROVED), ([S.BLOCKED], S.EXECUTED),
    ([S.EXPIRED], S.APPROVED), ([S.EXPIRED], S.BLOCKED), ([S.EXECUTED, S.LEARNED], S.EXECUTED),
    ([S.BLOCKED, S.LEARNED], S.EXPIRED), ([S.EVALUATING], S.LEARNED), ([S.APPROVED], S.LEARNED),
])
def test_illegal_transitions_are_refused_and_counted(reach: list[S], illegal: S) -> None:
    book = book_with()
    for state in reach:
        assert book.advance("s1", state, 1_500)
    before = book.get("s1")
    assert before is not None
    state, history = before.state, list(before.history)
    assert book.advance("s1", illegal, 2_000) == []
    assert book.refused == 1
    assert before.state is state and before.history == history and before.updated_ms == 1_500
    with pytest.raises(IllegalSignalTransition):
        path_to(state, illegal)


def test_repeat_of_the_current_state_and_unknown_signals_are_no_ops() -> None:
    book = book_with()
    assert book.advance("s1", S.GENERATED, 2_000) == []
    assert book.advance("nope", S.APPROVED, 2_000) == []
    assert book.refused == 0
    assert book.get("s1").updated_ms == 1_000  # type: ignore[union-attr]


def test_expire_due_only_touches_signals_waiting_for_risk() -> None:
    book = SignalBook()
    for sid, exp in (("gen", 5_000), ("eval", 5_000), ("appr", 5_000), ("exec", 5_000), ("late", 9_000),
                     ("never", None)):
        book.generate(sid, "trend_signal", 1_000, exp)
    book.advance("eval", S.EVALUATING, 1_100)
    book.advance("appr", S.APPROVED, 1_100)
    book.advance("exec", S.EXECUTING, 1_100)
    book.advance("never", S.EVALUATING, 1_100)
    assert book.expire_due(4_999) == []
    out = book.expire_due(5_000)  # the expiry instant itself is due
    assert sorted((t.signal_id, t.from_state, t.to_state) for t in out) == [
        ("eval", S.EVALUATING, S.EXPIRED), ("gen", S.GENERATED, S.EXPIRED)]
    assert all(t.reason == "expired before a risk decision" and t.ts_ms == 5_000 for t in out)
    assert book.get("appr").state is S.APPROVED  # type: ignore[union-attr]
    assert book.get("exec").state is S.EXECUTING  # type: ignore[union-attr]
    assert book.expire_due(5_000) == []  # not twice
    assert [t.signal_id for t in book.expire_due(10**12)] == ["late"]
    assert book.get("never").state is S.EVALUATING  # type: ignore[union-attr]


def test_capacity_evicts_the_oldest_signals() -> None:
    book = SignalBook(capacity=3)
    for i in range(5):
        book.generate(f"s{i}", "trend_signal", 1_000 + i, 2_000, client_order_id=f"wq{i}")
    assert len(book) == 3
    assert [s.signal_id for s in book.signals()] == ["s2", "s3", "s4"]
    assert book.get("s0") is None and book.by_client_order_id("wq0") is None
    assert book.by_client_order_id("wq4") is book.get("s4")
    assert sorted(t.signal_id for t in book.expire_due(3_000)) == ["s2", "s3", "s4"]  # evicted ones are gone


def test_signals_and_counts_by_state() -> None:
    book = SignalBook()
    for i in range(4):
        book.generate(f"s{i}", "trend_signal", 1_000, None)
    book.advance("s1", S.APPROVED, 1_100)
    book.advance("s2", S.BLOCKED, 1_100)
    book.advance("s3", S.BLOCKED, 1_100)
    assert book.counts() == {"generated": 1, "approved": 1, "blocked": 2}
    assert [s.signal_id for s in book.signals(S.BLOCKED)] == ["s2", "s3"]


def rebuild(book: SignalBook) -> SignalBook:
    """What core does at start-up: replay every logged transition, oldest first."""
    logged = sorted((t for s in book.signals() for t in s.history), key=lambda t: t.ts_ms)
    fresh = SignalBook(book.capacity)
    for t in logged:
        sig = book.get(t.signal_id)
        assert sig is not None
        fresh.apply_transition(t, expires_at_ms=sig.expires_at_ms, client_order_id=sig.client_order_id)
    return fresh


def assert_same_book(a: SignalBook, b: SignalBook) -> None:
    assert len(a) == len(b)
    for sig in a.signals():
        other = b.get(sig.signal_id)
        assert other is not None
        assert (other.state, other.history, other.expires_at_ms, other.client_order_id, other.updated_ms) == (
            sig.state, sig.history, sig.expires_at_ms, sig.client_order_id, sig.updated_ms)
        if sig.client_order_id:
            assert b.by_client_order_id(sig.client_order_id) is other


def test_rebuild_from_the_log_equals_the_original() -> None:
    book = SignalBook()
    book.generate("a", "trend_signal", 1, 100, "trend_btc", "BTC/USDT", "wq-a")
    book.generate("b", "trend_signal", 2, 100, "trend_eth", "ETH/USDT", "wq-b")
    book.generate("c", "probe_signal", 3, 50, None, None, "wq-c")
    book.advance("a", S.EXECUTED, 10)
    book.advance("a", S.LEARNED, 20)
    book.advance("b", S.BLOCKED, 11)
    fresh = rebuild(book)
    assert_same_book(book, fresh)
    # the rebuilt book keeps working: c is still waiting and expires
    assert [t.signal_id for t in fresh.expire_due(60)] == ["c"]


ops = st.lists(st.tuples(st.integers(0, 3), st.sampled_from(ALL), st.booleans()), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_random_advances_never_break_the_rules(sequence: list[tuple[int, S, bool]]) -> None:
    book = SignalBook()
    ts = 1_000
    for i in range(4):
        book.generate(f"s{i}", "trend_signal", ts, ts + 50)
    for idx, target, expire_now in sequence:
        ts += 10
        sid = f"s{idx}"
        sig = book.get(sid)
        assert sig is not None
        before = sig.state
        refused = book.refused
        out = book.expire_due(ts) if expire_now else book.advance(sid, target, ts)
        if expire_now:
            assert all(t.from_state in (S.GENERATED, S.EVALUATING) and t.to_state is S.EXPIRED for t in out)
            continue
        if before is S.LEARNED:
            assert out == []  # learned is terminal
            assert sig.state is S.LEARNED
        if out:
            assert [t.to_state for t in out] == path_to(before, target)
            assert out[0].from_state is before
            assert all(a.to_state is b.from_state for a, b in itertools.pairwise(out))
            assert sig.state is target
        else:
            assert sig.state is before
            if before is not target:
                assert book.refused == refused + 1
                with pytest.raises(IllegalSignalTransition):
                    path_to(before, target)
    for sig in book.signals():
        # every recorded step is a single legal step
        for t in sig.history[1:]:
            assert t.from_state is not None
            assert path_to(t.from_state, t.to_state) == [t.to_state]
    assert_same_book(book, rebuild(book))


def test_path_to_covers_exactly_the_documented_graph() -> None:
    single_steps = set()
    for a in ALL:
        for b in ALL:
            try:
                path = path_to(a, b)
            except IllegalSignalTransition:
                continue
            single_steps |= set(zip([a, *path], path))
    assert single_steps == {
        (S.GENERATED, S.EVALUATING), (S.EVALUATING, S.APPROVED), (S.APPROVED, S.EXECUTING),
        (S.EXECUTING, S.EXECUTED), (S.EVALUATING, S.BLOCKED), (S.GENERATED, S.EXPIRED),
        (S.EVALUATING, S.EXPIRED), (S.APPROVED, S.EXPIRED), (S.EXECUTING, S.EXPIRED),
        (S.EXECUTED, S.LEARNED), (S.EXPIRED, S.LEARNED), (S.BLOCKED, S.LEARNED),
        # core expired it while the approval was in flight, yet the order reached the venue: the venue wins
        (S.EXPIRED, S.EXECUTING), (S.EXPIRED, S.EXECUTED),
    }
    for b in ALL:
        with pytest.raises(IllegalSignalTransition):
            path_to(S.LEARNED, b)


def test_expire_due_is_deterministic_in_generation_order() -> None:
    book = SignalBook()
    ids = [f"sig-{i:03d}" for i in range(30)]
    for sid in ids:
        book.generate(sid, "trend_signal", 1_000, 2_000)
    assert [t.signal_id for t in book.expire_due(2_000)] == ids

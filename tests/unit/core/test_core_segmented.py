"""SegmentedDict behaves as an insertion-ordered dict whatever is done to it, and keeps every segment at most
`segment_size` keys (no insert ever rebuilds more than that) and their number bounded."""

from __future__ import annotations

import itertools
from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wavesquant.core.segmented import SegmentedDict

keys = st.integers(min_value=0, max_value=40)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), keys, st.integers()),
        st.tuples(st.just("del"), keys),
        st.tuples(st.just("pop"), keys),
        st.tuples(st.just("pop_oldest")),
        st.tuples(st.just("setdefault"), keys, st.integers()),
    ),
    max_size=300,
)


@settings(max_examples=1000, deadline=None)
@given(operations, st.integers(min_value=2, max_value=6))
def test_segmented_dict_matches_an_ordered_dict(ops: list[tuple], segment_size: int) -> None:
    model: OrderedDict[int, int] = OrderedDict()
    d: SegmentedDict[int, int] = SegmentedDict(segment_size)
    for op in ops:
        if op[0] == "set":
            d[op[1]] = op[2]
            model[op[1]] = op[2]
        elif op[0] == "del":
            if op[1] in model:
                del d[op[1]]
                del model[op[1]]
            else:
                with pytest.raises(KeyError):
                    del d[op[1]]
        elif op[0] == "pop":
            assert d.pop(op[1], None) == model.pop(op[1], None)
        elif op[0] == "pop_oldest":
            if model:
                assert d.pop_oldest() == model.popitem(last=False)
            else:
                with pytest.raises(KeyError):
                    d.pop_oldest()
        else:
            assert d.setdefault(op[1], op[2]) == model.setdefault(op[1], op[2])
        assert list(d.items()) == list(model.items())
        assert len(d) == len(model)
        # neighbours (the newest aside) never hold half a segment or less between them: no trail of sparse ones
        sizes = [len(s) for s in d._segments[:-1]]
        assert all(a + b > segment_size // 2 for a, b in itertools.pairwise(sizes))
        assert all(0 < n <= segment_size for n in sizes)
    for k in range(41):
        assert (k in d) == (k in model)
        assert d.get(k) == model.get(k)
    assert list(d.values()) == list(model.values())


def test_a_key_set_again_keeps_its_new_place_when_segments_merge_into_the_front() -> None:
    d: SegmentedDict[int, int] = SegmentedDict(4)
    for k in range(1, 10):
        d[k] = k
    assert d.pop_oldest() == (1, 1)
    del d[2]
    d[2] = 2  # now after 9
    for k in (10, 11, 12):
        d[k] = k
    for k in (5, 6, 7, 3, 9, 10, 11, 4):
        del d[k]  # leaves [8] and [2]: merged into the front
    assert list(d) == [8, 2, 12]
    assert [d.pop_oldest()[0] for _ in range(3)] == [8, 2, 12]


def test_a_long_fifo_history_stays_in_few_segments() -> None:
    d: SegmentedDict[int, None] = SegmentedDict(1000)
    for i in range(50_000):
        d[i] = None
        if len(d) > 10_000:
            d.pop_oldest()
    assert len(d) == 10_000 and list(d)[:2] == [40_000, 40_001]
    assert d.segments <= 12


def test_long_lived_keys_do_not_leave_a_trail_of_segments() -> None:
    """One key in a thousand stays (a resting order among market orders): its segments are merged."""
    d: SegmentedDict[int, None] = SegmentedDict(100)
    for i in range(100_000):
        d[i] = None
        if i >= 50 and (i - 50) % 1000:
            del d[i - 50]
    assert len(d) == 150
    assert d.segments <= 6


"""A dict for long, bounded histories (orders, fills, signals by id) whose inserts never stop the process.

A Python dict rebuilds its whole table when it fills up: when it grows, and, once keys also leave (a history
bounded to its latest N), again every so many inserts. The rebuild costs what the dict holds: measured at
1,000 orders/s, execution's five order-keyed maps stopped it for 14 ms at the 43,690th order (every map grew
past 2/3 of 65,536 slots at once) and would have for twice that at 87,381, then every few minutes for good.
`SegmentedDict` keeps its keys in dicts of at most `segment_size` each, oldest first; only the newest takes
new keys, so a rebuild touches one segment (~0.1 ms). Lookups try the newest segment first, where recent keys
live; a key that is not there costs one probe per segment (13 at 100,000 keys).

Order is insertion order, as in a dict: updating a key keeps its place; deleting it and setting it again
moves it to the end. `pop_oldest` takes from the front in O(1), like `OrderedDict.popitem(last=False)`.
Segments that deletions left sparse are merged with a neighbour (order kept), so a few long-lived keys
cannot leave a trail of near-empty segments: two neighbours (the newest aside) always hold more than half
a segment between them."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, MutableMapping, ValuesView
from typing import TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")

DEFAULT_SEGMENT_SIZE = 8192
_MISSING = object()


class SegmentedDict(MutableMapping[K, V]):
    __slots__ = ("_front_keys", "_front_pos", "_len", "_segments", "_size")

    def __init__(self, segment_size: int = DEFAULT_SEGMENT_SIZE) -> None:
        if segment_size < 2:
            raise ValueError("segment_size must be at least 2")
        self._size = segment_size
        self._segments: list[dict[K, V]] = [{}]  # oldest first; the last one takes new keys
        self._len = 0
        # pop_oldest walks the oldest segment's keys from a snapshot (a dict popped from the front would be
        # scanned past its deleted slots on every pop); the oldest segment is sealed: it never takes new keys
        self._front_keys: list[K] | None = None
        self._front_pos = 0

    def _find(self, key: K) -> int:
        """Index of the segment holding `key`, or -1."""
        segments = self._segments
        for i in range(len(segments) - 1, -1, -1):
            if key in segments[i]:
                return i
        return -1

    def __getitem__(self, key: K) -> V:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value  # type: ignore[return-value]

    @overload
    def get(self, key: K, /) -> V | None: ...
    @overload
    def get(self, key: K, default: V | D, /) -> V | D: ...
    def get(self, key: K, default: object = None) -> object:
        for segment in reversed(self._segments):
            value = segment.get(key, _MISSING)
            if value is not _MISSING:
                return value
        return default

    def __contains__(self, key: object) -> bool:
        for segment in reversed(self._segments):
            if key in segment:
                return True
        return False

    def __setitem__(self, key: K, value: V) -> None:
        i = self._find(key)
        if i >= 0:
            self._segments[i][key] = value
            return
        newest = self._segments[-1]
        if len(newest) >= self._size:
            newest = {}
            self._segments.append(newest)
        newest[key] = value
        self._len += 1

    def setdefault(self, key: K, default: V) -> V:  # type: ignore[override]
        value = self.get(key, _MISSING)
        if value is _MISSING:
            self[key] = default
            return default
        return value  # type: ignore[return-value]

    def __delitem__(self, key: K) -> None:
        i = self._find(key)
        if i < 0:
            raise KeyError(key)
        del self._segments[i][key]
        self._len -= 1
        self._tidy(i)

    @overload
    def pop(self, key: K, /) -> V: ...
    @overload
    def pop(self, key: K, default: V | D, /) -> V | D: ...
    def pop(self, key: K, default: object = _MISSING) -> object:
        i = self._find(key)
        if i < 0:
            if default is _MISSING:
                raise KeyError(key)
            return default
        value = self._segments[i].pop(key)
        self._len -= 1
        self._tidy(i)
        return value

    def pop_oldest(self) -> tuple[K, V]:
        """Remove and return the entry inserted first (KeyError when empty)."""
        if not self._len:
            raise KeyError("pop_oldest(): dictionary is empty")
        if len(self._segments) == 1:
            self._segments.append({})  # seal the only segment: it is the oldest now
        front = self._segments[0]
        if self._front_keys is None:
            self._front_keys, self._front_pos = list(front), 0
        keys = self._front_keys
        while True:  # the front segment holds an entry: _tidy drops it when it is empty
            key = keys[self._front_pos]
            self._front_pos += 1
            value = front.pop(key, _MISSING)
            if value is not _MISSING:
                self._len -= 1
                self._tidy(0)
                return key, value  # type: ignore[return-value]

    def _tidy(self, i: int) -> None:
        """After a removal from segment i: drop it if empty, or merge it with a neighbour if the two together
        hold no more than half a segment (the newest segment is left alone: it is still filling)."""
        segments = self._segments
        last = len(segments) - 1
        if i == last:
            return
        if not segments[i]:
            del segments[i]
            if i == 0:
                self._front_keys = None
            return
        half = self._size // 2
        if i > 0 and len(segments[i - 1]) + len(segments[i]) <= half:
            self._merge(i - 1)
        elif i + 1 < last and len(segments[i]) + len(segments[i + 1]) <= half:
            self._merge(i)

    def _merge(self, i: int) -> None:
        """Append segment i+1 to segment i (order kept). Into the front segment, the walk's snapshot is taken
        again: a key deleted from the front and set again since may come back with the later segment, and
        must be met at its new place, not its old one."""
        later = self._segments.pop(i + 1)
        self._segments[i].update(later)
        if i == 0:
            self._front_keys = None

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[K]:
        for segment in self._segments:
            yield from segment

    def values(self) -> ValuesView[V]:
        return _Values(self)

    def items(self) -> ItemsView[K, V]:
        return _Items(self)

    def clear(self) -> None:
        self._segments = [{}]
        self._len = 0
        self._front_keys = None

    def __repr__(self) -> str:
        return f"SegmentedDict({len(self)} keys in {len(self._segments)} segments)"

    @property
    def segments(self) -> int:
        return len(self._segments)


class _Values(ValuesView[V]):
    """Walks the segments (the generic view looks each key up again: one probe per segment per key)."""

    _mapping: SegmentedDict[object, V]

    def __iter__(self) -> Iterator[V]:
        for segment in self._mapping._segments:
            yield from segment.values()


class _Items(ItemsView[K, V]):
    _mapping: SegmentedDict[K, V]

    def __iter__(self) -> Iterator[tuple[K, V]]:
        for segment in self._mapping._segments:
            yield from segment.items()

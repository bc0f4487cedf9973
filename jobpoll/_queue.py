"""`Queue`: the jobs of a fan-out waiting for their next poll, in order of due time."""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Iterator

_ROW_BITS = 32
_ROW_MASK = (1 << _ROW_BITS) - 1
#: The key's due time for a due too far off for nanoseconds in a float (beyond about 1e299 s:
#: a `Retry-After` obeyed up to a huge `max_retry_after`): after (or before) every other.
_FAR_NS = 1 << 1100


def _key(due: float, row: int) -> int:
    try:
        return (round(due * 1e9) << _ROW_BITS) | row
    except OverflowError:
        return ((_FAR_NS if due > 0 else -_FAR_NS) << _ROW_BITS) | row


class Queue:
    """The jobs waiting for their next poll: a heap of integers, each a due time (in
    nanoseconds, for the order) and a row; the exact due times are the table's `dues`.

    An integer per job instead of a (due, index, entry) tuple: a third of the memory, and
    nothing for the collector to walk.
    """

    __slots__ = ("_dues", "_heap")

    def __init__(self, dues: array[float]) -> None:
        self._heap: list[int] = []
        self._dues = dues

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due: float, row: int) -> None:
        self._dues[row] = due
        heapq.heappush(self._heap, _key(due, row))

    def extend(self, rows: list[tuple[float, int]]) -> None:
        for due, row in rows:
            self._dues[row] = due
            self._heap.append(_key(due, row))
        heapq.heapify(self._heap)

    def first_due(self) -> float:
        return self._dues[self._heap[0] & _ROW_MASK]

    def pop(self) -> int:
        return heapq.heappop(self._heap) & _ROW_MASK

    def __iter__(self) -> Iterator[tuple[float, int]]:
        """(due, row) of every job queued, in no particular order."""
        dues = self._dues
        for key in self._heap:
            row = key & _ROW_MASK
            yield dues[row], row

"""`JobTable`: a fan-out's jobs as rows of `array` columns derived from `JobState`'s fields,
and `Queue`: the rows waiting for their next poll. As objects, a job would cost a kilobyte and
several objects for the collector to walk: pauses of half a second at 100,000 jobs."""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Iterator
from datetime import datetime
from typing import Any, get_args

import attrs

from jobpoll._models import STATUS_BY_VALUE, Job
from jobpoll._state import JobState, PaceState, record_type

#: A `Job`'s fields as a row keeps them, its status as the status's value.
_Fields = tuple[str, datetime, str | None, int, str, str]


def _int_typecode(field: attrs.Attribute[Any]) -> str:
    """A byte for a whole number whose declared bounds fit in one, else eight. At 100,000
    waiting jobs (benchmarks/bench_scale.py, target 600 B): 482 B a job so, 552 B with every
    whole number in eight bytes."""
    low, high = field.metadata.get("min", -math.inf), field.metadata.get("max", math.inf)
    return "b" if low >= -128 and high <= 127 else "q"


class _Columns:
    """A column for each field of a record but its id, snapshot and pace (the table's own):
    `float | None` as NaN for None, the last error (most rows lack one) in a dict by row."""

    def __init__(self, cls: type) -> None:
        self.plain: list[tuple[str, Any, object]] = []  # (field, column, blank)
        self.maybe_floats: list[tuple[str, array[float]]] = []
        self.sparse: list[tuple[str, dict[int, Any]]] = []
        for field in attrs.fields(cls):
            name, type_, args = field.name, field.type, get_args(field.type)
            if type_ is str or Job in args or record_type(field) is not None:
                continue
            if type_ is float:
                self.plain.append((name, array("d"), 0.0))
            elif type_ is int:
                self.plain.append((name, array(_int_typecode(field)), 0))
            elif float in args:
                self.maybe_floats.append((name, array("d")))
            elif str in args:
                self.plain.append((name, [], None))  # strings the answers share
            else:
                self.sparse.append((name, {}))

    def append(self) -> None:
        for _name, column, blank in self.plain:
            column.append(blank)
        for _name, floats in self.maybe_floats:
            floats.append(math.nan)

    # A plain loop, not code compiled from the fields: that takes 3.0 µs instead of 6.5 µs
    # (1% of a poll's CPU), a difference benchmarks/bench_scale.py shows no target sees.

    def load(self, record: Any, row: int) -> None:
        for name, column, _blank in self.plain:
            setattr(record, name, column[row])
        for name, floats in self.maybe_floats:
            value = floats[row]
            setattr(record, name, None if math.isnan(value) else value)
        for name, sparse in self.sparse:
            setattr(record, name, sparse.get(row))

    def save(self, record: Any, row: int) -> None:
        for name, column, _blank in self.plain:
            column[row] = getattr(record, name)
        for name, floats in self.maybe_floats:
            value = getattr(record, name)
            floats[row] = math.nan if value is None else value
        for name, sparse in self.sparse:
            value = getattr(record, name)
            if value is None:
                sparse.pop(row, None)
            else:
                sparse[row] = value


def _fields(job: Job | None, kept: _Fields | None) -> _Fields | None:
    """The snapshot as a tuple, which the collector untracks (a `Job` it would walk at every
    full collection); `kept` when the same, so that a repeated answer keeps nothing new."""
    if job is None:
        return None
    new = (job.id, job.created_at, job.user, job.progress, job.status.value, job.raw_status)
    return kept if new == kept else new


class JobTable:
    """Row `i` is the job `ids[i]`; `state` is the `JobState` rows are loaded into."""

    def __init__(self, ids: list[str]) -> None:
        self._ids = ids
        self._columns = _Columns(JobState)
        self._pace = _Columns(PaceState)
        self._jobs: list[_Fields | None] = []
        self.state = JobState(job_id="", pace=PaceState())
        #: When each job's next poll is due, on the policy's clock (`next_poll_at`).
        self.dues = dict(self._columns.maybe_floats)["next_poll_at"]

    def add(self, state: JobState) -> int:
        row = len(self._jobs)
        self._jobs.append(None)
        self._columns.append()
        self._pace.append()
        self.save(row, state)
        return row

    def load(self, row: int) -> JobState:
        """The state, holding the row's: run the rules on it, then `save(row)`."""
        state = self.state
        state.job_id = self._ids[row]
        state.job = self.job(row)
        self._columns.load(state, row)
        self._pace.load(state.pace, row)
        return state

    def save(self, row: int, state: JobState | None = None) -> None:
        """Keep the state (by default the one rows are loaded into) as the row's."""
        state = state or self.state
        self._jobs[row] = _fields(state.job, self._jobs[row])
        self._columns.save(state, row)
        self._pace.save(state.pace, row)

    def load_pace(self, row: int) -> PaceState:
        """The row's schedule, to read, never save (a progress view, once a second)."""
        pace = self.state.pace
        self._pace.load(pace, row)
        return pace  # type: ignore[return-value]

    def job(self, row: int) -> Job | None:
        fields = self._jobs[row]
        if fields is None:
            return None
        job_id, created_at, user, progress, status, raw_status = fields
        return Job(
            id=job_id,
            created_at=created_at,
            user=user,
            progress=progress,
            status=STATUS_BY_VALUE[status],
            raw_status=raw_status,
        )


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
    """A heap of integers, each a due time in nanoseconds and a row: a third of the memory of a
    tuple, nothing for the collector to walk. The exact due times are the table's `dues`."""

    def __init__(self, dues: array[float]) -> None:
        self._heap: list[int] = []
        self._dues = dues

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due: float, row: int) -> None:
        self._dues[row] = due
        heapq.heappush(self._heap, _key(due, row))

    def first_due(self) -> float:
        return self._dues[self._heap[0] & _ROW_MASK]

    def pop(self) -> int:
        return heapq.heappop(self._heap) & _ROW_MASK

    def __iter__(self) -> Iterator[int]:
        """The rows queued, in no particular order."""
        return (key & _ROW_MASK for key in self._heap)

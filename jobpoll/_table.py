"""`JobTable`: the state of a fan-out's jobs as rows of plain numbers, one row per job.

A fan-out waits on up to millions of jobs. Held as objects (a tracker, its pace, a heap
entry per job), their state cost about a kilobyte per job, and gave the garbage collector
several objects per job to walk at every full collection: pauses of half a second at 100,000
jobs, in someone else's event loop. Here a job is a row: its numbers in `array` columns
(which the collector never walks), its status string shared with every other job's, its
place in the queue one integer, and its last snapshot the only object of its own (one `Job`,
kept as it is while an answer repeats it).

The rules stay where they are, written once: `Tracker` (what a wait knows and decides) and
`Pace` (its schedule). A row is loaded into a tracker (with its pace) kept for the purpose,
the rules run on it exactly as they do for `wait_for_job`, and it is saved back. The columns
are derived from the two classes' slots (numbers by the type a new instance holds), so a slot
added there is a column here without a word.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from jobpoll._errors import JobPollError
from jobpoll._models import Job, JobStatus
from jobpoll._policy import Pace, PollPolicy
from jobpoll._wait import Tracker

__all__ = ["JobTable", "Queue"]

#: A `Job`'s fields, its status by the status's value.
_Fields = tuple[str, datetime, str | None, int, str, str]
_STATUSES = {status.value: status for status in JobStatus}

#: Tracker slots that are the fan-out's, not the job's: set once on the tracker kept for
#: loading. `_next_delay` is decided by every rule that the scheduler then reads, never kept
#: from one poll to the next.
_SHARED = frozenset({"_policy", "_timeout", "_deadline", "_pace", "_next_delay"})
#: Slots kept apart: the id (the fan-out's list of ids), the snapshot (a list of `Job`), the
#: last error (a dict: nearly every job has none) and the pace's status (a list of shared
#: strings).
_APART = frozenset({"_job_id", "_job", "_last_error", "_status"})


def _slots(cls: type) -> list[str]:
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    return names


def _numbers(instance: object, names: list[str]) -> tuple[list[str], list[str]]:
    """The slots of `instance` among `names` that hold a float, and those that hold an int."""
    floats = [name for name in names if type(getattr(instance, name)) is float]
    ints = [name for name in names if type(getattr(instance, name)) is int]
    return floats, ints


class JobTable:
    """The rows of a fan-out's jobs, and the tracker that rows are loaded into.

    `tracker_cls` is the fan-out's tracker class (a `Tracker`, with slots of its own that
    hold numbers); a row starts as a new tracker of it does, begun when the job is taken in.
    `ids` is the fan-out's list of ids: row `i` is the job `ids[i]`.
    """

    __slots__ = (
        "_deadline",
        "_errors",
        "_floats",
        "_ids",
        "_ints",
        "_jobs",
        "_load",
        "_load_counts",
        "_load_pace",
        "_loaded",
        "_policy",
        "_save",
        "_save_counts",
        "_slot_names",
        "_statuses",
        "_timeout",
        "dues",
        "tracker",
    )

    def __init__(
        self,
        tracker_cls: Callable[[str, PollPolicy, float | None], Tracker],
        ids: list[str],
        policy: PollPolicy,
        timeout: float | None,
    ) -> None:
        self._policy = policy
        self._timeout = timeout
        self._deadline: float | None = None
        self._ids = ids  # the fan-out's: row i is the job ids[i]
        self._jobs: list[_Fields | None] = []
        self._loaded: tuple[Job | None, _Fields | None] = (None, None)
        self._statuses: list[str | None] = []
        self._errors: dict[int, JobPollError] = {}
        #: When each job's next poll is due, on the policy's clock.
        self.dues = array("d")
        self.tracker: Any = tracker_cls("", policy, timeout)
        self.tracker._begin(0.0)
        tracker, pace = self.tracker, self.tracker._pace
        names = [n for n in _slots(type(tracker)) if n not in _SHARED and n not in _APART]
        pace_names = [n for n in _slots(Pace) if n not in _SHARED and n not in _APART]
        floats, ints = _numbers(tracker, names)
        pace_floats, pace_ints = _numbers(pace, pace_names)
        if len(floats) + len(ints) != len(names) or len(pace_floats) + len(pace_ints) != len(
            pace_names
        ):  # pragma: no cover - a slot that is no number needs a column of its own
            raise TypeError("a tracker or pace slot holds neither a float nor an int")
        self._floats = {name: array("d") for name in floats + pace_floats}
        # Whole numbers start a byte each (percents, counts of a few): a column widens to
        # eight bytes the first time a value does not fit (`_widen`).
        self._ints = {name: array("b") for name in ints + pace_ints}
        self._slot_names = (floats, ints, pace_floats, pace_ints)
        self._recompile()

    def _recompile(self) -> None:
        floats, ints, pace_floats, pace_ints = self._slot_names
        self._load, self._save = self._compile(floats, ints, pace_floats, pace_ints)
        # The counts only: what sending a poll (and timing a job out) reads and changes.
        self._load_counts, self._save_counts = self._compile(floats, ints, [], [])
        # The schedule only (not the job's snapshot, which costs a `Job` to make): what a
        # progress view reads of every waiting job, once a second.
        self._load_pace = self._compile([], [], pace_floats, pace_ints, whole=False)[0]

    def _widen(self) -> None:
        """Widen the byte columns whose value in the tracker does not fit in a byte."""
        tracker = self.tracker
        pace_ints = set(self._slot_names[3])
        for name, column in self._ints.items():
            value = getattr(tracker._pace if name in pace_ints else tracker, name)
            if column.typecode == "b" and not -128 <= value <= 127:
                self._ints[name] = array("q", column)
        self._recompile()

    def _compile(
        self,
        floats: list[str],
        ints: list[str],
        pace_floats: list[str],
        pace_ints: list[str],
        *,
        whole: bool = True,
    ) -> tuple[Callable[[int], None], Callable[[int], None]]:
        """Straight-line functions that copy a row into the tracker, and back: a loop over
        the slots with `setattr` would cost a few microseconds more per poll."""
        names = {name: f"c{i}" for i, name in enumerate([*self._floats, *self._ints])}
        columns = {names[n]: c for n, c in [*self._floats.items(), *self._ints.items()]}
        load = ["def load(row):", " t = tracker"]
        save = ["def save(row):", " t = tracker"]
        load += [" t._job_id = ids[row]"]
        if whole:
            load += [" t._job = job_of(jobs[row])", " t._last_error = errors.get(row)"]
        if pace_floats or pace_ints:
            load += [" p = t._pace", " p._status = statuses[row]"]
            save += [" p = t._pace", " statuses[row] = p._status", " keep_job(row, t._job)"]
            save += [" error = t._last_error", " if error is None:"]
            save += ["  errors.pop(row, None)", " else:", "  errors[row] = error"]
        for owner, slots in (("t", floats + ints), ("p", pace_floats + pace_ints)):
            for name in slots:
                load.append(f" {owner}.{name} = {names[name]}[row]")
                save.append(f" {names[name]}[row] = {owner}.{name}")
        scope: dict[str, Any] = {
            "tracker": self.tracker,
            "ids": self._ids,
            "jobs": self._jobs,
            "errors": self._errors,
            "statuses": self._statuses,
            "job_of": self._job_of,
            "keep_job": self._keep_job,
            **columns,
        }
        exec(compile("\n".join(load), "<jobpoll row load>", "exec"), scope)
        exec(compile("\n".join(save), "<jobpoll row save>", "exec"), scope)
        return scope["load"], scope["save"]

    def share(self, timeout: float | None, deadline: float | None) -> None:
        """The fan-out's timeout and deadline, which every job shares."""
        self._timeout = timeout
        self._deadline = deadline
        self.tracker._timeout = timeout
        self.tracker._deadline = deadline

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, now: float) -> int:
        """A row for the next id of the fan-out's list: a new tracker, begun at `now`."""
        row = len(self._jobs)
        tracker = self.tracker
        type(tracker).__init__(tracker, self._ids[row], self._policy, self._timeout)
        tracker._begin(now)  # with a pace of its own, which `save` reads
        tracker._deadline = self._deadline
        self._append_row(now)
        self.save(row)
        return row

    def add_tracker(self, source: Tracker) -> int:
        """A row holding the state of a tracker (one restored from a checkpoint)."""
        row = len(self._jobs)
        self._append_row(self._policy.clock())
        tracker = self.tracker
        for name in _slots(type(source)):
            if name not in _SHARED or name == "_pace":
                setattr(tracker, name, getattr(source, name))
        self.save(row)
        return row

    def _append_row(self, due: float) -> None:
        self._jobs.append(None)
        self._statuses.append(None)
        self.dues.append(due)
        for floats in self._floats.values():
            floats.append(0.0)
        for ints in self._ints.values():
            ints.append(0)

    def load(self, row: int) -> Any:
        """The tracker, holding the row's state: run the rules on it, then `save(row)`."""
        self._load(row)
        return self.tracker

    def save(self, row: int) -> None:
        """Keep the tracker's state as the row's."""
        try:
            self._save(row)
        except OverflowError:  # a count past a byte, the first time: widen, and again
            self._widen()
            self._save(row)

    def load_pace(self, row: int) -> Any:
        """The tracker with the row's id and schedule (its pace) only, to read, never save."""
        self._load_pace(row)
        return self.tracker

    def load_counts(self, row: int) -> Any:
        """The tracker with the row's counts and times only (not its pace): enough to send a
        poll or time the job out; `save_counts(row)` keeps them."""
        self._load_counts(row)
        return self.tracker

    def save_counts(self, row: int) -> None:
        try:
            self._save_counts(row)
        except OverflowError:
            self._widen()
            self._save_counts(row)

    def job(self, row: int) -> Job | None:
        """The last snapshot of the row's job."""
        return self._job_of(self._jobs[row])

    # A job's last snapshot is kept as a tuple of its fields, all strings, numbers and a
    # datetime: the collector untracks such a tuple at its first pass, and never walks it
    # again, where it would walk a `Job` (an object with slots) at every full collection.
    # The `Job` given to the rules, a result or a checkpoint is made from it when loaded.

    def _job_of(self, fields: _Fields | None) -> Job | None:
        if fields is None:
            return None
        job_id, created_at, user, progress, status, raw_status = fields
        job = Job(
            id=job_id,
            created_at=created_at,
            user=user,
            progress=progress,
            status=_STATUSES[status],
            raw_status=raw_status,
        )
        self._loaded = job, fields
        return job

    def _keep_job(self, row: int, job: Job | None) -> None:
        loaded, fields = self._loaded
        if job is loaded and self._jobs[row] is fields:
            return  # unchanged since it was loaded: the same fields
        if job is None:
            self._jobs[row] = None
            return
        new = (job.id, job.created_at, job.user, job.progress, job.status.value, job.raw_status)
        old = self._jobs[row]
        # An answer that repeats the last one keeps its fields: nothing new lives on.
        self._jobs[row] = old if new == old else new


#: Rows waiting for their next poll, in order of due time, then of row: one integer each.
_ROW_BITS = 32
_ROW_MASK = (1 << _ROW_BITS) - 1
#: The key's due time for a due too far off for nanoseconds in a float (beyond about 1e299 s:
#: a `Retry-After` obeyed up to a huge `max_retry_after`): after (or before) every other.
_FAR_NS = 1 << 1100


def _far_key(due: float, row: int) -> int:
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

    def __bool__(self) -> bool:
        return bool(self._heap)

    def push(self, due: float, row: int) -> None:
        self._dues[row] = due
        try:
            key = (round(due * 1e9) << _ROW_BITS) | row
        except OverflowError:
            key = _far_key(due, row)
        heapq.heappush(self._heap, key)

    def extend(self, rows: list[tuple[float, int]]) -> None:
        """Push many at once (a heap made in one go)."""
        for due, row in rows:
            self._dues[row] = due
            try:
                key = (round(due * 1e9) << _ROW_BITS) | row
            except OverflowError:
                key = _far_key(due, row)
            self._heap.append(key)
        heapq.heapify(self._heap)

    def first_due(self) -> float:
        """When the first job is due (the queue must not be empty)."""
        return self._dues[self._heap[0] & _ROW_MASK]

    def pop(self) -> int:
        """The row of the first job, taken off the queue."""
        return heapq.heappop(self._heap) & _ROW_MASK

    def clear(self) -> None:
        self._heap.clear()

    def __iter__(self) -> Iterator[tuple[float, int]]:
        """(due, row) of every job queued, in no particular order."""
        dues = self._dues
        for key in self._heap:
            row = key & _ROW_MASK
            yield dues[row], row

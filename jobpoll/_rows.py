"""`JobTable`: the state of a fan-out's jobs as rows of plain numbers, one row per job.

A fan-out waits on up to millions of jobs. Held as objects (a `JobState` and its
`PaceState` per job), their state would cost about a kilobyte per job, and give the garbage
collector several objects per job to walk at every full collection: pauses of half a second
at 100,000 jobs, in someone else's event loop. Here a job is a row: its numbers in `array`
columns (which the collector never walks), its status string shared with every other job's,
and its last snapshot the only object of its own (kept as a tuple of its fields).

The columns are derived from the records' fields and their declared types, so a field added
to `JobState` or `PaceState` is a column here without a word:

- `str`: the row's key, the job id: the fan-out's list of ids (row `i` is `ids[i]`);
- `float`: a column of doubles (`float | None`: None as NaN);
- `int`: a column of bytes when the field's declared bounds fit in one (the percents of a
  pace), else of eight-byte integers (counts);
- `str | None`: a list (the strings are the answers', shared by every job in a status);
- `Job | None`: a list of tuples of the job's fields (see `_keep_job`);
- a record (`PaceState | None`): its own fields, the same way (every row has one: a fan-out
  starts a job's clocks when it takes it in);
- anything else `| None` (the last error): a dict by row, for what most rows lack.

The rules run on one `JobState` kept for the purpose: a row is loaded into it, the rules
update it, and it is saved back.
"""

from __future__ import annotations

import math
from array import array
from datetime import datetime
from typing import Any, get_args

import attrs

from jobpoll._models import Job, JobStatus
from jobpoll._state import JobState, PaceState, record_type

__all__ = ["JobTable"]

#: A `Job`'s fields, its status by the status's value.
_Fields = tuple[str, datetime, str | None, int, str, str]
_STATUSES = {status.value: status for status in JobStatus}


def _int_typecode(field: attrs.Attribute[Any]) -> str:
    """A byte for a whole number whose declared bounds fit in one, else eight. At 100,000
    waiting jobs (benchmarks/bench_scale.py, target 600 B): 482 B a job so; 552 B with every
    whole number in eight bytes; 460 B with counts in bytes widened when one outgrows them,
    a saving that pays for no target, so counts are not widened."""
    low, high = field.metadata.get("min"), field.metadata.get("max")
    fits = low is not None and high is not None and low >= -128 and high <= 127
    return "b" if fits else "q"


class _Columns:
    """The columns of one record type's fields, by what each field holds."""

    __slots__ = ("floats", "ints", "job", "key", "maybe_floats", "record", "sparse", "strings")

    def __init__(self, cls: type) -> None:
        self.key: str | None = None
        self.job: str | None = None
        self.record: tuple[str, _Columns] | None = None
        self.floats: list[tuple[str, array[float]]] = []
        self.maybe_floats: list[tuple[str, array[float]]] = []
        self.ints: list[tuple[str, array[int]]] = []
        self.strings: list[tuple[str, list[str | None]]] = []
        self.sparse: list[tuple[str, dict[int, Any]]] = []
        for field in attrs.fields(cls):
            name, type_ = field.name, field.type
            nested = record_type(field)
            if type_ is str:
                self.key = name
            elif type_ is float:
                self.floats.append((name, array("d")))
            elif type_ is int:
                self.ints.append((name, array(_int_typecode(field))))
            elif nested is not None:
                self.record = (name, _Columns(nested))
            elif Job in get_args(type_):
                self.job = name
            elif float in get_args(type_):
                self.maybe_floats.append((name, array("d")))
            elif str in get_args(type_):
                self.strings.append((name, []))
            else:
                self.sparse.append((name, {}))

    def append(self) -> None:
        for _name, floats in self.floats + self.maybe_floats:
            floats.append(0.0)
        for _name, ints in self.ints:
            ints.append(0)
        for _name, strings in self.strings:
            strings.append(None)
        if self.record is not None:
            self.record[1].append()

    def column(self, name: str) -> array[float]:
        """The column of doubles of a field (`float` or `float | None`)."""
        return dict(self.floats + self.maybe_floats)[name]

    # A plain loop over the derived fields, not code compiled from them: compiled, a load and
    # a save take 3.0 µs instead of 6.5 µs (about 1% of a poll's CPU), and
    # benchmarks/bench_scale.py --sizes 100000, run after run on one machine, shows no
    # difference a target sees: stall 94/70 ms plain, 92/72 ms compiled (asyncio, first
    # round/steady, beside 143/92 ms for the code before), 460 and 449 B per waiting job.

    def load(self, record: Any, row: int) -> None:
        for name, floats in self.floats:
            setattr(record, name, floats[row])
        for name, maybe in self.maybe_floats:
            value = maybe[row]
            setattr(record, name, None if math.isnan(value) else value)
        for name, ints in self.ints:
            setattr(record, name, ints[row])
        for name, strings in self.strings:
            setattr(record, name, strings[row])
        for name, sparse in self.sparse:
            setattr(record, name, sparse.get(row))

    def save(self, record: Any, row: int) -> None:
        for name, floats in self.floats:
            floats[row] = getattr(record, name)
        for name, maybe in self.maybe_floats:
            value = getattr(record, name)
            maybe[row] = math.nan if value is None else value
        for name, ints in self.ints:
            ints[row] = getattr(record, name)
        for name, strings in self.strings:
            strings[row] = getattr(record, name)
        for name, sparse in self.sparse:
            value = getattr(record, name)
            if value is None:
                sparse.pop(row, None)
            else:
                sparse[row] = value


class JobTable:
    """The rows of a fan-out's jobs, and the `JobState` that rows are loaded into.

    `ids` is the fan-out's list of ids: row `i` is the job `ids[i]`.
    """

    __slots__ = ("_columns", "_ids", "_jobs", "_loaded", "_pace", "dues", "state")

    def __init__(self, ids: list[str]) -> None:
        self._ids = ids
        self._columns = _Columns(JobState)
        assert self._columns.record is not None
        self._pace = self._columns.record[1]
        self._jobs: list[_Fields | None] = []
        self._loaded: tuple[Job | None, _Fields | None] = (None, None)
        #: The record the rules run on.
        self.state = JobState(job_id="", pace=PaceState())
        #: When each job's next poll is due, on the policy's clock (`next_poll_at`).
        self.dues = self._columns.column("next_poll_at")

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, state: JobState) -> int:
        """A row holding `state` (with a pace), for the next id of the fan-out's list."""
        row = len(self._jobs)
        self._jobs.append(None)
        self._columns.append()
        self._save(state, row)
        return row

    def load(self, row: int) -> JobState:
        """The state, holding the row's: run the rules on it, then `save(row)`."""
        state = self.state
        state.job_id = self._ids[row]
        state.job = self._job_of(self._jobs[row])
        self._columns.load(state, row)
        self._pace.load(state.pace, row)
        return state

    def save(self, row: int) -> None:
        """Keep the state's as the row's."""
        self._save(self.state, row)

    def _save(self, state: JobState, row: int) -> None:
        self._keep_job(row, state.job)
        self._columns.save(state, row)
        self._pace.save(state.pace, row)

    def load_counts(self, row: int) -> JobState:
        """The state with the row's id, counts and times only (not its snapshot or pace):
        enough to send a poll or time the job out; `save_counts(row)` keeps them."""
        state = self.state
        state.job_id = self._ids[row]
        self._columns.load(state, row)
        return state

    def save_counts(self, row: int) -> None:
        self._columns.save(self.state, row)

    def load_pace(self, row: int) -> PaceState:
        """The row's schedule, to read, never save (a progress view, once a second)."""
        pace = self.state.pace
        self._pace.load(pace, row)
        return pace  # type: ignore[return-value]

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

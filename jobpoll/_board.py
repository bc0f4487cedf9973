"""What is known of each job of a `jobpoll wait`, and the totals its views show, kept up to
date at each change so that drawing a view never walks every job."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence

import attrs

from jobpoll._errors import JobFailedError, WaitTimeout
from jobpoll._exits import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_UNREACHABLE
from jobpoll._fanout import JobsWait
from jobpoll._models import Job, JobResult
from jobpoll._pace import QUEUED

SUCCEEDED = "succeeded"
FAILED = "failed"
UNREACHABLE = "unreachable"
TIMED_OUT = "timed out"
#: What a result counts as, each under its name (see `outcome_of`).
OUTCOMES = (SUCCEEDED, FAILED, UNREACHABLE, TIMED_OUT)


def outcome_of(result: JobResult) -> str:
    """What a result counts as: succeeded; timed out (`WaitTimeout`); unreachable (the API
    could not be reached or kept failing: a transient error past the policy's retries); or
    failed (the job ended unsuccessfully, is not found, or its answers were wrong)."""
    error = result.error
    if error is None:
        return SUCCEEDED
    if isinstance(error, WaitTimeout):
        return TIMED_OUT
    if error.transient:
        return UNREACHABLE
    return FAILED


@attrs.define
class Row:
    """One job on the board."""

    job_id: str
    job: Job | None = None
    result: JobResult | None = None
    ended_at: float | None = None


class Board:
    """The jobs of a wait (distinct ids, in the order given) on the wait's clock. A job's time
    left is read from its schedule in the fan-out (`JobsWait.time_left`): no model of its own."""

    def __init__(
        self,
        job_ids: Sequence[str],
        *,
        clock: Callable[[], float],
        earlier: Mapping[str, int] | None = None,
    ) -> None:
        self.rows = {job_id: Row(job_id) for job_id in job_ids}
        self.clock = clock
        self.started = clock()
        self._left: dict[str, float | None] = {}
        self._left_at = self.started
        self.fanout: JobsWait | None = None
        self.total = len(self.rows)
        #: The jobs still waiting whose status has not been read yet. A job that ended
        #: without ever being read (a 404, a wrong answer, a timeout) is not among them: it
        #: counts among the ended ones, under its outcome (failed, unreachable, timed out).
        self.unseen = self.total
        self.queued = 0
        self.ended = 0
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        #: The outcomes of the earlier runs of a wait kept in a state file, which the exit
        #: status counts too: it tells how the whole wait went.
        self.earlier = {**self.outcomes, **(earlier or {})}
        self.unsuccessful: list[Row] = []
        # (when, id, the snapshot or the unsuccessful result): made into text only when shown.
        self.recent: deque[tuple[float, str, Job | JobResult]] = deque(maxlen=12)
        self._progress = 0  # the sum of every job's progress, ended jobs counting 100

    @property
    def percent(self) -> float:
        """How far the whole wait is, in percent: each job's progress, ended ones at 100."""
        return self._progress / self.total if self.total else 100.0

    @property
    def polls(self) -> int:
        return self.fanout.polls if self.fanout is not None else 0

    @property
    def in_flight(self) -> int:
        return self.fanout.in_flight if self.fanout is not None else 0

    def elapsed(self, now: float | None = None) -> float:
        return (self.clock() if now is None else now) - self.started

    def changed(self, job: Job) -> Row | None:
        """Take in a snapshot from `on_update` (the first, a change, or the last)."""
        # The client hands back the id as it was asked, whatever case the server wrote.
        row = self.rows.get(job.id)
        if row is None or row.ended_at is not None:
            return None
        self._forget(row)
        self._progress += job.progress
        self.queued += job.status in QUEUED
        row.job = job
        self.recent.append((self.clock(), row.job_id, job))
        return row

    def ended_with(self, result: JobResult) -> None:
        row = self.rows[result.job_id]
        now = self.clock()
        self._forget(row)
        if result.job is not None:
            row.job = result.job
        self._progress += 100
        row.result, row.ended_at = result, now
        self.ended += 1
        outcome = outcome_of(result)
        self.outcomes[outcome] += 1
        if outcome != SUCCEEDED:
            self.unsuccessful.append(row)
            if not isinstance(result.error, JobFailedError):  # else its last change says it
                self.recent.append((now, row.job_id, result))

    def _forget(self, row: Row) -> None:
        """Take a waiting job's last snapshot (or its being unseen) out of the totals."""
        if row.job is None:
            self.unseen -= 1
        else:
            self._progress -= row.job.progress
            self.queued -= row.job.status in QUEUED

    def refresh_estimates(self, now: float) -> None:
        """Read each waiting job's time left from the fan-out's schedules (a pass over every
        waiting job)."""
        if self.fanout is not None:
            self._left = self.fanout.time_left()
            self._left_at = now

    def time_left(self, row: Row, now: float) -> float | None:
        """A job's time left at the pace its schedule measured (as last read), or None."""
        left = self._left.get(row.job_id)
        return None if left is None else max(0.0, left - (now - self._left_at))

    def longest_time_left(self, now: float) -> float | None:
        """The longest time left among the waiting jobs whose progress has moved."""
        known = [left for left in self._left.values() if left is not None]
        return max(0.0, max(known) - (now - self._left_at)) if known else None

    def exit_code(self, *, timed_out: bool = False) -> int:
        """The status the outcomes so far give, earlier runs' included; `timed_out`: time ran
        out for the jobs not ended."""
        outcomes = {outcome: self.outcomes[outcome] + self.earlier[outcome] for outcome in OUTCOMES}
        if outcomes[FAILED]:
            return EXIT_FAILED
        if outcomes[UNREACHABLE]:
            return EXIT_UNREACHABLE
        if outcomes[TIMED_OUT] or timed_out:
            return EXIT_TIMEOUT
        return EXIT_OK

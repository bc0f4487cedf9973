"""`Scheduler`: a fan-out's jobs, and the loop that polls each when it is due.

It drives the rules of `_rules` for every job: takes ids in (`_intake`), keeps each job as a
row (`_rows`) queued for its next poll (`_queue`), sends polls as the window and the fleet's
pause allow (`_fleet`, `_flight`), and keeps each job's outcome ready to hand out. `JobsWait`
is its face: it hands the outcomes out, and checkpoints and restores the jobs.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections import deque
from collections.abc import AsyncIterable
from typing import Any

from jobpoll._client import JobsClient
from jobpoll._errors import JobFailedError, JobPollError
from jobpoll._fleet import Fleet
from jobpoll._flight import Flight, weak_wake
from jobpoll._intake import Intake, read_source
from jobpoll._models import Job
from jobpoll._queue import Queue
from jobpoll._rows import JobTable
from jobpoll._rules import Rules
from jobpoll._state import JobState
from jobpoll._wait import UpdateCallback, notify

__all__ = ["Outcome", "Scheduler", "SourceError"]

#: How a job ended: its id, its last snapshot, and its error (None: it succeeded).
Outcome = tuple[str, Job | None, JobPollError | None]

#: The tasks reading async sources, held until they end: the event loop holds tasks only
#: weakly, so a fan-out collected in a reference cycle would take its pending reader with it
#: ("Task was destroyed but it is pending"); held here, the reader is cancelled by the
#: fan-out's finalizer and ends.
_READERS: set[asyncio.Task[None]] = set()


class SourceError(Exception):
    """Carries what the caller's async iterable of ids raised, to be raised as itself."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


class Scheduler:
    """The jobs of one fan-out: taken in, queued, in flight, and ready to hand out."""

    __slots__ = (
        "client",
        "closed",
        "ended",
        "fleet",
        "flight",
        "handed_row",
        "intake",
        "on_update",
        "polls",
        "queue",
        "reader",
        "ready",
        "rules",
        "source",
        "started",
        "started_at",
        "table",
    )

    def __init__(
        self,
        client: JobsClient,
        rules: Rules,
        max_in_flight: int,
        on_update: UpdateCallback | None,
    ) -> None:
        self.client = client
        self.rules = rules
        self.on_update = on_update
        self.flight = Flight(rules.policy.sleep)
        self.intake = Intake(weak_wake(self.flight))
        self.source: AsyncIterable[Any] | None = None
        self.reader: asyncio.Task[None] | None = None
        # Each job taken in is a row of the table (row i: the id `intake.ids[i]`), queued for
        # its next poll while it waits.
        self.table = JobTable(self.intake.ids)
        self.queue = Queue(self.table.dues)
        self.fleet = Fleet(rules.policy, max_in_flight)
        #: Outcomes to hand out, with their rows: still pending, so a checkpoint holds them.
        self.ready: deque[tuple[str, Job | None, JobPollError | None, int]] = deque()
        self.handed_row = 0  # the row of the outcome handed out last
        self.started = False
        self.started_at = -math.inf  # when it started here: a resumed job's first contact
        self.ended = False  # every job reported, no more may come
        self.closed = False
        self.polls = 0

    async def next_outcome(self) -> Outcome:
        clock, intake = self.rules.policy.clock, self.intake
        if self.flight.dying:
            await self.flight.bury()
        if not self.started and not self.closed:
            self.start(clock())
        while True:
            if self.closed:  # its pending jobs are kept only for `checkpoint()`
                raise StopAsyncIteration
            if intake.waiting:
                self.take_in(clock())
            self._launch(clock())
            if self.ready:
                job_id, job, error, self.handed_row = self.ready.popleft()
                return job_id, job, error
            source_error = intake.source_error
            if source_error is not None:
                intake.source_error = None
                raise SourceError(source_error)
            if self._idle():
                self.ended = True
                raise StopAsyncIteration
            await self._wait(clock())
            await self._collect(clock())

    def _idle(self) -> bool:
        """Whether every job was reported, and no more may come."""
        intake = self.intake
        return not (self.queue or self.flight.running or intake.waiting or intake.source_open)

    def start(self, now: float) -> None:
        self.started, self.started_at = True, now
        rules = self.rules
        if rules.timeout is not None and rules.deadline is None:
            rules.deadline = now + rules.timeout
        if self.source is not None:
            self.intake.source_open = True
            self.reader = reader = asyncio.ensure_future(
                read_source(weakref.ref(self.intake), self.source)
            )
            _READERS.add(reader)
            reader.add_done_callback(_READERS.discard)
            self.source = None

    def take_in(self, now: float) -> None:
        """Set up the next slice of ids given but not taken in yet: a row each, begun now
        (the scheduler yields to the event loop between two slices)."""
        table, queue, invalid = self.table, self.queue, self.intake.invalid
        begun = JobState(job_id="")  # every job of the slice starts alike: one state for all
        self.rules.begin(begun, now)
        for job_id in self.intake.take():
            row = table.add(begun)  # the row's id is `intake.ids[row]`
            if invalid and job_id in invalid:
                error = invalid.pop(job_id)
                self.ready.append((error.job_id or job_id, None, error, row))
                continue
            queue.push(now, row)

    def _launch(self, now: float) -> None:
        """Start the polls that are due, as far as the window and the fleet's pause allow."""
        queue, table, rules, fleet = self.queue, self.table, self.rules, self.fleet
        if rules.deadline is not None and now >= rules.deadline:
            while queue:  # nothing more may be sent: each waiting job has timed out
                row = queue.pop()
                state = table.load(row)
                self.report(row, state.job, rules.timed_out(state))
            return
        if now < fleet.resume_at:
            return
        running, flight, client = self.flight.running, self.flight, self.client
        while queue and len(running) < fleet.window and queue.first_due() <= now:
            row = queue.pop()
            state = table.load_counts(row)
            timeout = rules.send(state, now)
            fleet.sent(state)
            table.save_counts(row)
            flight.send(client, state.job_id, timeout, row)
            self.polls += 1

    async def _wait(self, now: float) -> None:
        """Sleep until a poll comes back, the next one is due, or the deadline."""
        flight, queue, deadline = self.flight, self.queue, self.rules.deadline
        if flight.finished:
            return
        if self.intake.waiting:
            await asyncio.sleep(0)  # more jobs to set up: let the loop run in between
            return
        wake_at = math.inf
        if queue and len(flight.running) < self.fleet.window:
            wake_at = max(queue.first_due(), self.fleet.resume_at)
        if queue and deadline is not None and not flight.running:
            # With polls in flight no alarm is needed for the deadline: each request's
            # timeout is cut to the time left, so one comes back by then and wakes us. (An
            # alarm there would also let a virtual clock jump to the deadline at once.)
            wake_at = min(wake_at, deadline)
        # Something is in flight or queued (else the loop would have ended), so a poll or the
        # alarm will wake us.
        await flight.wait(wake_at, now)

    async def _collect(self, now: float) -> None:
        """Take in the polls that came back: report the jobs that ended, queue the others.

        Each job's fate (reported or queued again) is settled before `on_update` is awaited,
        so a cancellation that lands in the callback loses no job.

        Raises:
            JobPollError: an error about the caller's setup (`JobPollError.stops_all`); its
                job is queued again, still pending.
        """
        finished, running = self.flight.finished, self.flight.running
        while finished:
            task = finished.popleft()
            row = running.pop(task, None)
            if row is None:
                continue  # dropped on purpose by _cancel_running
            if task.cancelled():  # by someone else (a shutdown cancelling every task)
                self.queue.push(now, row)
                continue
            update = self._settle(row, task.result(), now)  # only a bug raises from result()
            if update is not None and self.on_update is not None:
                await notify(self.on_update, update)

    def _settle(self, row: int, outcome: Job | JobPollError, now: float) -> Job | None:
        """Apply the rules to a poll's outcome: the row is reported or queued again, and
        keeps what they decided (or raised) before anything is awaited; the snapshot to
        hand to `on_update`, if it is news."""
        table, rules, fleet = self.table, self.rules, self.fleet
        state = table.load(row)
        try:
            if isinstance(outcome, Job):
                fleet.answered(state)
                news, delay = rules.answered(state, outcome, now)
                if delay is None:
                    state.next_poll_at = None
                    table.save(row)
                    error = JobFailedError(outcome) if outcome.failed else None
                    self.report(row, outcome, error)
                else:
                    self._requeue(row, state, now + delay)
                return outcome if news else None
            if outcome.throttles:
                fleet.throttled(state, outcome, now)
            self._requeue(
                row, state, now + rules.failed(state, outcome, now, since=self.started_at)
            )
        except JobPollError as exc:
            table.save(row)
            if exc.stops_all:
                self.queue.push(now, row)
                raise
            # Reported, not raised: its traceback holds this frame, so the fan-out, which
            # a dropped fan-out's result would keep alive (its reader and polls running)
            # until a garbage collection.
            self.report(row, state.job, exc.with_traceback(None))
        return None

    def _requeue(self, row: int, state: JobState, due: float) -> None:
        """Keep the row's new state, and queue it for when its rules decided."""
        deadline = self.rules.deadline
        if deadline is not None and due > deadline:
            due = deadline
        state.next_poll_at = due
        self.table.save(row)
        self.queue.push(due, row)

    def report(self, row: int, job: Job | None, error: JobPollError | None) -> None:
        self.ready.append((self.intake.ids[row], job, error, row))

    async def cancel_running(self) -> None:
        """Cancel the polls in flight and wait for them; those jobs are polled anew.

        The jobs are queued again before anything is awaited: a second cancellation landing
        while the polls wind down (a worker stopped twice) loses none of them.
        """
        rows = self.flight.cancel()
        now = self.rules.policy.clock()
        for row in rows:
            self.queue.push(now, row)
        await self.flight.bury()

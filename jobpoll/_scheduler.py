"""`Scheduler`: a fan-out's jobs, and the loop that polls each when the rules say it is due."""

from __future__ import annotations

import asyncio
import contextlib
import math
import weakref
from collections import deque
from collections.abc import AsyncIterable
from typing import Any

import attrs

from jobpoll._client import JobsClient
from jobpoll._errors import JobFailedError, JobPollError
from jobpoll._flight import Fleet, Flight, weakly
from jobpoll._intake import Intake, read_source
from jobpoll._models import Job, JobResult
from jobpoll._rows import JobTable, Queue
from jobpoll._rules import Rules
from jobpoll._state import JobState
from jobpoll._wait import UpdateCallback, notify

Outcome = tuple[JobResult, int]

#: The tasks reading async sources, held until they end: the event loop holds tasks only
#: weakly, and a fan-out collected in a reference cycle would take its reader with it.
_READERS: set[asyncio.Task[None]] = set()


@attrs.define
class SourceError(Exception):
    """Carries what the caller's async iterable of ids raised, to be raised as itself."""

    error: BaseException


class Scheduler:
    """The jobs of one fan-out: taken in, queued, in flight, and ready to hand out."""

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
        self.intake = Intake(weakly(self.flight.wake))
        self.source: AsyncIterable[Any] | None = None
        self.reader: asyncio.Task[None] | None = None
        self.table = JobTable(self.intake.ids)
        self.queue = Queue(self.table.dues)
        self.fleet = Fleet(rules.policy, max_in_flight)
        #: Outcomes to hand out: still pending, so a checkpoint holds them.
        self.ready: deque[Outcome] = deque()
        self.started_at = -math.inf  # when it started here: a resumed job's first contact
        self.ended = False
        self.closed = False
        self.polls = 0

    async def next_outcome(self) -> Outcome:
        clock, intake = self.rules.policy.clock, self.intake
        if self.flight.dying:
            await self.flight.bury()
        if self.started_at == -math.inf and not self.closed:
            self.start(clock())
        while True:
            if self.closed:  # its pending jobs are kept only for `checkpoint()`
                raise StopAsyncIteration
            if intake.waiting:
                self.take_in(clock())
            self._launch(clock())
            if self.ready:
                return self.ready.popleft()
            source_error = intake.source_error
            if source_error is not None:  # the jobs read so far stay pending
                await self.cancel_running()  # if cancelled here, it is raised at the next step
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
        self.started_at = now
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
        """Set up the next slice of ids, a row each, begun now."""
        table, queue, invalid = self.table, self.queue, self.intake.invalid
        begun = JobState(job_id="")  # every job of the slice starts alike: one state for all
        self.rules.begin(begun, now)
        for job_id in self.intake.take():
            row = table.add(begun)
            if invalid and job_id in invalid:
                error = invalid.pop(job_id)
                self.ready.append((JobResult(error.job_id or job_id, None, error), row))
                continue
            queue.push(now, row)

    def _launch(self, now: float) -> None:
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
            state = table.load(row)
            timeout = rules.send(state, now)
            state.sent_after_pauses = fleet.paused
            table.save(row)
            flight.send(client, state.job_id, timeout, row)
            self.polls += 1

    async def _wait(self, now: float) -> None:
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
            # With polls in flight, one comes back by the deadline (each request's timeout is
            # cut to the time left); an alarm would let a virtual clock jump there at once.
            wake_at = min(wake_at, deadline)
        await flight.wait(wake_at, now)

    async def _collect(self, now: float) -> None:
        """Settle the polls that came back, each before `on_update` is awaited: a
        cancellation that lands in the callback loses no job."""
        finished, running = self.flight.finished, self.flight.running
        while finished:
            task = finished.popleft()
            row = running.pop(task, None)
            if row is None:
                continue  # dropped on purpose by cancel_running
            if task.cancelled():  # by someone else (a shutdown cancelling every task)
                self.queue.push(now, row)
                continue
            update = self._settle(row, task.result(), now)  # only a bug raises from result()
            if update is not None and self.on_update is not None:
                await notify(self.on_update, update)

    def _settle(self, row: int, outcome: Job | JobPollError, now: float) -> Job | None:
        """Report or queue the row again as the rules decide; the snapshot for `on_update` if
        it is news. An error that `stops_all` is raised, its job queued again."""
        table, rules, fleet = self.table, self.rules, self.fleet
        state = table.load(row)
        try:
            if isinstance(outcome, Job):
                fleet.answered(state)
                news, delay = rules.answered(state, outcome, now)
                if delay is None:
                    state.next_poll_at = None
                    table.save(row)
                    self.report(row, outcome, JobFailedError(outcome) if outcome.failed else None)
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
            # Its traceback holds this frame, so the fan-out, which a dropped fan-out's
            # result would keep alive (its reader and polls running) until a collection.
            self.report(row, state.job, exc.with_traceback(None))
        return None

    def _requeue(self, row: int, state: JobState, due: float) -> None:
        if self.rules.deadline is not None:
            due = min(due, self.rules.deadline)
        state.next_poll_at = due
        self.table.save(row)
        self.queue.push(due, row)

    def report(self, row: int, job: Job | None, error: JobPollError | None) -> None:
        self.ready.append((JobResult(self.intake.ids[row], job, error), row))

    async def cancel_running(self) -> None:
        """Queued again before anything is awaited: a second cancellation loses no job."""
        now = self.rules.policy.clock()
        for row in self.flight.cancel():
            self.queue.push(now, row)
        await self.flight.bury()

    async def close(self) -> None:
        self.closed = True
        reader, self.reader = self.reader, None
        if reader is not None:
            reader.cancel()
            self.flight.dying.add(reader)
        await self.cancel_running()

    def drop(self) -> None:
        """Cancel every task, without waiting: the fan-out is being collected."""
        with contextlib.suppress(RuntimeError):  # the event loop may be closed already
            self.flight.cancel()
            if self.reader is not None:
                self.reader.cancel()

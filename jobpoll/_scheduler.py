"""`Scheduler`: a fan-out's jobs, and the loop that polls each when the rules say it is due;
`Flight`: its polls in flight, and what wakes it (held only weakly by their callbacks, so that
a fan-out dropped after a `break` is collected and cancels them). How fast polls leave is the
client's (its rate gate, `_gate`), shared with everything else that uses it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import weakref
from collections import deque
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

import attrs

from jobpoll._client import JobsClient
from jobpoll._defaults import sleeps_for_real
from jobpoll._errors import JobFailedError, JobPollError
from jobpoll._intake import Intake, read_source
from jobpoll._models import Job, JobResult
from jobpoll._rows import JobTable, Queue
from jobpoll._rules import Rules
from jobpoll._state import JobState
from jobpoll._wait import UpdateCallback, notify

logger = logging.getLogger("jobpoll")

#: A poll's outcome: the job, or the error (returned, not raised: an unretrieved exception in
#: a task that a closed fan-out dropped would be logged as a bug).
PollOutcome = Job | JobPollError


async def _poll(client: JobsClient, job_id: str, request_timeout: float | None) -> PollOutcome:
    try:
        return await client.get_job(job_id, timeout=request_timeout)
    except JobPollError as exc:
        return exc


def weakly(method: Callable[..., None]) -> Callable[..., None]:
    """`method`, holding its object weakly: a call once it is collected does nothing."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> None:
        bound = ref()
        if bound is not None:
            bound(*args)

    return call


class Flight:
    """The polls in flight (`running`: task to row), those back and not taken yet
    (`finished`), those cancelled and not seen to end (`dying`), and the alarm: a timer on
    the event loop or, with a policy's own `sleep` (a virtual clock), a task sleeping."""

    def __init__(self, sleep: Callable[[float], Awaitable[object]]) -> None:
        self._sleep = sleep
        self.running: dict[asyncio.Future[PollOutcome], int] = {}
        self.finished: deque[asyncio.Future[PollOutcome]] = deque()
        self.dying: set[asyncio.Future[Any]] = set()
        self.alarm: asyncio.TimerHandle | asyncio.Future[Any] | None = None
        self.alarm_at = math.inf
        self._wakeup: asyncio.Future[None] | None = None
        self._on_done = weakly(self._done)
        self._on_alarm = weakly(self._rang)

    def _done(self, task: asyncio.Future[PollOutcome]) -> None:
        self.finished.append(task)
        self.wake()

    def _rang(self, source: object) -> None:
        """`source`: None from a timer, else the sleeper task that ended."""
        if source is None or source is self.alarm:
            self.alarm, self.alarm_at = None, math.inf
            self.wake()

    def send(self, client: JobsClient, job_id: str, timeout: float | None, row: int) -> None:
        task = asyncio.ensure_future(_poll(client, job_id, timeout))
        task.add_done_callback(self._on_done)
        self.running[task] = row

    def wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def wait(self, wake_at: float, now: float) -> None:
        """Sleep until a poll comes back, something wakes the scheduler, or `wake_at`."""
        loop = asyncio.get_running_loop()
        if wake_at < self.alarm_at:
            self._drop_alarm()
            delay = max(0.0, wake_at - now)
            if sleeps_for_real(self._sleep):  # a timer is far cheaper than a task
                self.alarm = loop.call_later(delay, self._on_alarm, None)
            else:
                self.alarm = asyncio.ensure_future(self._sleep(delay))
                self.alarm.add_done_callback(self._on_alarm)
            self.alarm_at = wake_at
        self._wakeup = loop.create_future()
        await self._wakeup  # once done (or cancelled), `wake` leaves it be

    def _drop_alarm(self) -> None:
        alarm, self.alarm, self.alarm_at = self.alarm, None, math.inf
        if alarm is not None:
            alarm.cancel()
            if isinstance(alarm, asyncio.Future):
                self.dying.add(alarm)  # still owned: seen to end at the next step

    def cancel(self) -> list[int]:
        """The rows that were polled; await `bury()` once the caller has kept them."""
        running, self.running = self.running, {}
        self._drop_alarm()
        self.finished.clear()
        self.dying.update(running)
        for task in self.dying:
            task.cancel()
        self.wake()  # an iteration in another task must see the change (aclose from there)
        return list(running.values())

    async def bury(self) -> None:
        """Wait for the cancelled polls to end (if cancelled meanwhile, the rest stay listed)."""
        while self.dying:
            done, _ = await asyncio.wait(self.dying)
            self.dying -= done
            for task in done:  # mark a bug's exception as seen: it was dropped on purpose
                if not task.cancelled():
                    task.exception()


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
        self.max_in_flight = max_in_flight
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
        table, queue, invalid = self.table, self.queue, self.intake.invalid
        begun = JobState(job_id="")  # every job of the slice starts alike: one state for all
        self.rules.begin(begun, now)
        for job_id in self.intake.take():
            row = table.add(begun)
            if invalid and job_id in invalid:
                error = invalid.pop(job_id)
                label = job_id if error.job_id is None else error.job_id  # "" too
                self.ready.append((JobResult(label, None, error), row))
                continue
            queue.push(now, row)

    def _launch(self, now: float) -> None:
        queue, table, rules = self.queue, self.table, self.rules
        if rules.deadline is not None and now >= rules.deadline:
            while queue:  # nothing more may be sent: each waiting job has timed out
                row = queue.pop()
                state = table.load(row)
                self.report(row, state.job, rules.timed_out(state))
            return
        running, flight, client = self.flight.running, self.flight, self.client
        most = self.max_in_flight
        while queue and len(running) < most and queue.first_due() <= now:
            row = queue.pop()
            state = table.load(row)
            timeout = rules.send(state, now)
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
        if queue and len(flight.running) < self.max_in_flight:
            wake_at = queue.first_due()
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
        table, rules = self.table, self.rules
        state = table.load(row)
        try:
            if isinstance(outcome, Job):
                news, delay = rules.answered(state, outcome, now)
                if delay is None:
                    state.next_poll_at = None
                    table.save(row)
                    self.report(row, outcome, JobFailedError(outcome) if outcome.failed else None)
                else:
                    self._requeue(row, state, now + delay)
                return outcome if news else None
            self._requeue(
                row, state, now + rules.failed(state, outcome, now, since=self.started_at)
            )
        except JobPollError as exc:
            table.save(row)
            if exc.stops_all:
                self.queue.push(now, row)
                raise
            # Without its traceback (this frame, so the fan-out): a dropped fan-out's result
            # would keep it alive, its reader and polls running, until a collection.
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

"""`wait_for_jobs`: wait on many jobs at once, bounded, isolated, and gentle with the server.

`JobsWait` drives the rules of `_rules` for every job from one scheduler: it takes ids in
(`_intake`), keeps each job as a row (`_rows`) queued for its next poll (`_queue`), sends
polls as the window and the fleet's pause allow (`_fleet`, `_flight`), and hands out results.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections import deque
from collections.abc import AsyncIterable, Generator, Iterable, Mapping
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import attrs

from jobpoll._checkpoint import (
    VERSION,
    FanoutCheckpoint,
    dump,
    load_fanout,
    restore_state,
    saved_state,
)
from jobpoll._client import JobsClient
from jobpoll._errors import ConfigurationError, JobFailedError, JobPollError
from jobpoll._fleet import Fleet
from jobpoll._flight import Flight, weak_wake
from jobpoll._intake import Intake, checked_ids, read_source
from jobpoll._models import Job
from jobpoll._pace import time_left
from jobpoll._policy import PollPolicy
from jobpoll._queue import Queue
from jobpoll._rows import JobTable
from jobpoll._rules import Rules
from jobpoll._state import JobState
from jobpoll._timebase import Timebase
from jobpoll._wait import CallbackError, UpdateCallback, check_timeout, notify
from jobpoll._wire import record_from_wire, record_to_wire

__all__ = ["JobResult", "JobsWait", "wait_for_jobs"]

logger = logging.getLogger("jobpoll")

_DEFAULT_POLICY = PollPolicy()
#: The tasks reading async sources, held until they end: the event loop holds tasks only
#: weakly, so a fan-out collected in a reference cycle would take its pending reader with it
#: ("Task was destroyed but it is pending"); held here, the reader is cancelled by the
#: fan-out's finalizer and ends.
_READERS: set[asyncio.Task[None]] = set()


@attrs.frozen
class JobResult:
    """How one job of `wait_for_jobs` ended.

    Attributes:
        job_id: the job's id, as a `str`.
        job: the last snapshot seen, or None when no poll got an answer.
        error: what awaiting `wait_for_job` on this job alone would have raised:
            `JobFailedError` for a job that FAILED, DIED, COULDNT_START or was CANCELED,
            `WaitTimeout`, `JobStalled`, `NotFound`, a `DecodeError`, ...; None when the job
            FINISHED or was ARCHIVED.
    """

    job_id: str
    job: Job | None
    error: JobPollError | None = None

    @property
    def ok(self) -> bool:
        """True when the job FINISHED or was ARCHIVED (`error` is None)."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data: `jobId`, `job` (as `Job.to_dict()` writes it, or
        None) and `error` (None, or its `type` (class name), `message` and `attributes`),
        e.g. to save outcomes and read them back after a crash with `from_dict`."""
        return record_to_wire(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """A result from what `to_dict` wrote. The error is of the class it was (its message
        and attributes as they were), made without running its constructor.

        Raises:
            ValueError: the data is no such result; the message names the field.
        """
        return record_from_wire(data, cls)


def wait_for_jobs(
    client: JobsClient,
    job_ids: Iterable[str | UUID] | AsyncIterable[str | UUID],
    *,
    policy: PollPolicy | None = None,
    timeout: float | None = None,
    max_in_flight: int | None = None,
    on_update: UpdateCallback | None = None,
    resume: Mapping[str, Any] | None = None,
) -> JobsWait:
    """Wait for many jobs to end, each on its own schedule, with a bounded number of requests.

        async with wait_for_jobs(client, job_ids, timeout=3600) as results:
            async for result in results:          # one JobResult per job, as each ends
                print(result.job_id, "ok" if result.ok else result.error)

        results = await wait_for_jobs(client, job_ids)  # all of them, in the order given

    Each job ends as `wait_for_job` would end it alone (same policy, same errors), but its
    error is reported in its `JobResult` instead of raised: one job's failure, 404 or broken
    answer never stops the others. Duplicate ids are polled once and reported once, however
    they come in. How ids keep coming, and how the fan-out yields to a throttling server:
    see `JobsWait`.

    Args:
        client: the client to poll with.
        job_ids: the jobs to wait for (`str` or `UUID`): an iterable, read once at the call,
            or an async iterable, read as the fan-out runs. An id from an async iterable that
            could never be sent is reported as a `JobResult` with an `InvalidJobId` error
            (never polled); what the async iterable raises is raised from the iteration,
            once, and the jobs already read stay pending (iterating again goes on with them,
            without the source).
        policy: each job's schedule and rules for errors; `PollPolicy()` when None.
        timeout: the most seconds the whole fan-out may take, counted on `policy.clock` from
            its start; each job not ended by then is reported with a `WaitTimeout`.
        max_in_flight: the most requests out at any moment, however many jobs wait. By
            default the size of the client's connection pool, so requests never queue
            for a connection (their timeouts would run while they wait).
        on_update: called with every snapshot that `wait_for_job` would yield for any of the
            jobs (the first, each change, the last); it may be a coroutine function. What it
            raises ends the whole fan-out and is raised from the iteration.
        resume: a checkpoint of a fan-out (`JobsWait.checkpoint()`, through JSON or not) to
            go on from: its pending jobs go on where they left off, and `job_ids` are added
            (pass only new ones, or `[]`). The deadline is the checkpoint's, so `timeout`
            must be None; `policy` is not saved.

    Returns:
        A `JobsWait`: an async iterator of `JobResult`, an async context manager that cancels
        what is still in flight on exit, and awaitable for the list of all results.

    Raises:
        InvalidJobId: one of the ids of an iterable could never be sent (raised at once,
            before any poll; the message says which one).
        ConfigurationError: `timeout` or `max_in_flight` out of range, or `timeout` given
            with `resume`.
        CheckpointError: `resume` is of an unknown version or not a valid checkpoint.
        TypeError: `client`, `job_ids`, `policy` or `on_update` is not what it should be.
    """
    source = _check_call(client, job_ids, policy, on_update, timeout)
    if max_in_flight is None:
        max_in_flight = client.pool_size
    elif isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
        raise ConfigurationError(
            f"max_in_flight must be a whole number of 1 or more, got {max_in_flight!r}"
        )
    checked = [] if source is not None else checked_ids(job_ids, "job_ids")  # type: ignore[arg-type]
    saved = None
    if resume is not None:
        if timeout is not None:
            raise ConfigurationError(
                "timeout= cannot be given with resume=: the deadline is the checkpoint's"
            )
        saved = load_fanout(resume)
    fanout = JobsWait(client, policy or _DEFAULT_POLICY, timeout, max_in_flight, on_update)
    if saved is not None:
        fanout._restore(saved)
    fanout._intake.extend(checked)
    fanout._source = source
    return fanout


def _check_call(
    client: object, job_ids: object, policy: object, on_update: object, timeout: float | None
) -> AsyncIterable[Any] | None:
    """Refuse arguments of the wrong kind; the async source of ids, if `job_ids` is one."""
    if not isinstance(client, JobsClient):
        raise TypeError(f"client must be a JobsClient, got {type(client).__name__}")
    source = job_ids if isinstance(job_ids, AsyncIterable) else None
    if source is None and (
        isinstance(job_ids, (str, bytes, UUID)) or not isinstance(job_ids, Iterable)
    ):
        raise TypeError(
            f"job_ids must be an iterable or async iterable of job ids, got"
            f" {type(job_ids).__name__} (for one job, use wait_for_job or a list of one)"
        )
    if policy is not None and not isinstance(policy, PollPolicy):
        raise TypeError(f"policy must be a PollPolicy, got {type(policy).__name__}")
    if on_update is not None and not callable(on_update):
        raise TypeError(f"on_update must be callable, got {type(on_update).__name__}")
    check_timeout(timeout)
    return source


class _SourceError(Exception):
    """Carries what the caller's async iterable of ids raised, to be raised as itself."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


class JobsWait:
    """Many jobs waited for at once, from `wait_for_jobs`.

    - `async for result in fanout` yields one `JobResult` per distinct job, in the order
      they end.
    - `async with fanout as results:` cancels the polls still in flight on exit, whatever
      happened in the block; a `break` out of a plain `async for` does the same once the
      fan-out is dropped.
    - `await fanout` returns every result, in the order the ids were given.

    Polls are sent only while the fan-out is being iterated (or awaited): a consumer that
    stops reading holds no more than the requests already in flight, and those finish or are
    cancelled on exit. Cancelling the iterating task cancels the polls in flight; iterating
    again resumes, polling those jobs anew. Only one task may iterate it at a time
    (`RuntimeError` otherwise).

    Ids may keep coming while it runs: from an async iterable (read as the fan-out runs; it
    ends once the source is exhausted and every job is reported), and from `add(ids)`, from
    any task. Jobs are set up a slice at a time, yielding to the event loop in between, so a
    million ids never stall it. The first polls go out at once, `max_in_flight` at a time.
    When the server answers 429 or 503, the number of requests in flight is halved, then
    grows back by one with each answer, and every job's polls pause together (for
    `Retry-After` when given, else for a pause that doubles from `policy.initial` up to
    `policy.max_interval`); a stray one (no `Retry-After`, after an answer that was not
    throttled) only halves the window.
    """

    def __init__(
        self,
        client: JobsClient,
        policy: PollPolicy,
        timeout: float | None,
        max_in_flight: int,
        on_update: UpdateCallback | None,
    ) -> None:
        self._client = client
        self._rules = Rules(policy, timeout)
        self._on_update = on_update
        self._flight = Flight(policy.sleep)
        self._intake = Intake(weak_wake(self._flight))
        self._source: AsyncIterable[Any] | None = None
        self._reader: asyncio.Task[None] | None = None
        # Each job taken in is a row of the table (row i: the id `_intake.ids[i]`), queued
        # for its next poll while it waits.
        self._table = JobTable(self._intake.ids)
        self._queue = Queue(self._table.dues)
        self._fleet = Fleet(policy, max_in_flight)
        # Results to hand out, with their rows (None for an invalid id): still pending, so a
        # checkpoint holds them.
        self._ready: deque[tuple[JobResult, int | None]] = deque()
        self._started = False
        self._started_at = -math.inf  # when it started here: a resumed job's first contact
        self._ended = False  # the iteration ended: every job reported, no more may come
        self._closed = False
        self._busy = False
        self._reported = 0
        self._polls = 0
        self._gathered: dict[str, JobResult] = {}  # what `await` collected so far

    @property
    def total(self) -> int:
        """How many distinct jobs are waited for (so far, while ids may still come).

        Until every id of the call's list is set up, a repeat in a list of over 1000 ids
        not dropped yet is counted: a list without repeats sees no change.
        """
        return self._intake.total

    @property
    def reported(self) -> int:
        """How many results have been handed out so far."""
        return self._reported

    @property
    def polls(self) -> int:
        """How many requests have been sent so far, over all jobs."""
        return self._polls

    @property
    def in_flight(self) -> int:
        """How many requests are out right now."""
        return len(self._flight.running)

    def time_left(self) -> dict[str, float | None]:
        """Each waiting job's time left at the pace its schedule measured (None until its
        progress moves), by id: read-only, for a progress view."""
        now = self._rules.policy.clock()
        table, ids = self._table, self._intake.ids
        left: dict[str, float | None] = {}
        for row in [*(row for _due, row in self._queue), *self._flight.running.values()]:
            left[ids[row]] = time_left(table.load_pace(row), now)
        return left

    #: The name a progress view read until it used `time_left()`.
    _time_left = time_left

    def __repr__(self) -> str:
        return (
            f"<JobsWait {self._reported} of {self.total} jobs reported,"
            f" {self.in_flight} polls in flight, {self._polls} sent>"
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    def __await__(self) -> Generator[Any, None, list[JobResult]]:
        return self._gather().__await__()

    async def _gather(self) -> list[JobResult]:
        # Kept on the fan-out: awaited again after a cancellation or an error about the
        # setup, it goes on with the jobs still pending and returns them all. (Each way out
        # of __anext__ already leaves nothing in flight, so no `async with` is needed here.)
        by_id = self._gathered
        async for result in self:
            by_id[result.job_id] = result
        missing = self.total - len(by_id)
        if missing:
            raise RuntimeError(
                f"{missing} of the {self.total} results were not gathered: the fan-out"
                " was closed, or they were handed out by `async for` first"
            )
        return [by_id[job_id] for job_id in self._intake.ids]

    async def aclose(self) -> None:
        """Cancel the polls in flight and wait for them to end; no more results follow.

        Idempotent. Results already handed out stay valid. The jobs not reported are kept
        for `checkpoint()` (leaving `async with`, then checkpointing, loses none of them).
        """
        self._closed = self._intake.closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            self._flight.dying.add(reader)
        await self._cancel_running()

    def __del__(self) -> None:
        # A fan-out dropped after a `break` (no `async with`) cancels what it left in flight.
        self._flight.drop()
        if self._reader is not None:
            self._reader.cancel()

    def add(self, job_ids: Iterable[str | UUID]) -> int:
        """Add jobs to wait for, to a fan-out that has not ended (running or not started).

        Ids already given (in any earlier call, the source, or the checkpoint resumed) are
        not added twice. All or none: an id that could never be sent raises `InvalidJobId`
        naming its position, and none of this call's ids is added. The new jobs are set up
        at the next step of the iteration, and polled at once.

        Returns:
            How many of the ids were new.

        Raises:
            InvalidJobId: one of the ids could never be sent.
            RuntimeError: the fan-out has ended (every job reported, no more ids to come) or
                was closed: start another.
            TypeError: `job_ids` is a single id, or not an iterable.
        """
        if isinstance(job_ids, (str, bytes, UUID)) or not isinstance(job_ids, Iterable):
            raise TypeError(
                f"add() takes an iterable of job ids, got {type(job_ids).__name__}"
                " (for one id, a list of one)"
            )
        if self._closed or self._ended:
            raise RuntimeError("this fan-out has ended: ids can no longer be added")
        return self._intake.extend(checked_ids(job_ids, "ids"))

    async def __anext__(self) -> JobResult:
        if self._busy:
            raise RuntimeError("this fan-out is already being iterated by another task")
        self._busy = True
        try:
            return await self._next_result()
        except CallbackError as wrapper:  # a bug in on_update: raised as itself
            await self.aclose()
            raise wrapper.error from None
        except _SourceError as wrapper:  # the async iterable of ids raised: the jobs read
            source_error = wrapper.error  # so far stay pending
            try:
                await self._cancel_running()
            except BaseException:  # cancelled meanwhile: still owed, raised at the next step
                self._intake.source_error = source_error
                raise
        except (asyncio.CancelledError, JobPollError):
            # Cancelled, or an error about the caller's setup that every job would meet: the
            # jobs not reported stay pending, and iterating again polls them anew.
            await self._cancel_running()
            raise
        except BaseException:
            await self.aclose()
            raise
        finally:
            self._busy = False
        # Raised outside the handler, so that it keeps its own cause and context.
        raise source_error

    async def _next_result(self) -> JobResult:
        clock, intake = self._rules.policy.clock, self._intake
        if self._flight.dying:
            await self._flight.bury()
        if not self._started and not self._closed:
            self._start(clock())
        while True:
            if self._closed:  # its pending jobs are kept only for `checkpoint()`
                raise StopAsyncIteration
            if intake.waiting:
                self._take_in(clock())
            self._launch(clock())
            if self._ready:
                self._reported += 1
                return self._ready.popleft()[0]
            if intake.source_error is not None:
                error, intake.source_error = intake.source_error, None
                raise _SourceError(error)
            if not (self._queue or self._flight.running or intake.waiting or intake.source_open):
                self._ended = True
                raise StopAsyncIteration
            await self._wait(clock())
            await self._collect(clock())

    def _start(self, now: float) -> None:
        self._started, self._started_at = True, now
        rules = self._rules
        if rules.timeout is not None and rules.deadline is None:
            rules.deadline = now + rules.timeout
        if self._source is not None:
            self._intake.source_open = True
            self._reader = reader = asyncio.ensure_future(
                read_source(weakref.ref(self._intake), self._source)
            )
            _READERS.add(reader)
            reader.add_done_callback(_READERS.discard)
            self._source = None

    def _take_in(self, now: float) -> None:
        """Set up the next slice of ids given but not taken in yet: a row each, begun now
        (the scheduler yields to the event loop between two slices)."""
        table, queue, rules, invalid = self._table, self._queue, self._rules, self._intake.invalid
        for job_id in self._intake.take():
            state = JobState(job_id=job_id)
            rules.begin(state, now)
            row = table.add(state)
            if invalid and job_id in invalid:
                self._ready.append((JobResult(job_id, None, invalid.pop(job_id)), None))
                continue
            queue.push(now, row)

    def _launch(self, now: float) -> None:
        """Start the polls that are due, as far as the window and the fleet's pause allow."""
        queue, table, rules, fleet = self._queue, self._table, self._rules, self._fleet
        if rules.deadline is not None and now >= rules.deadline:
            while queue:  # nothing more may be sent: each waiting job has timed out
                row = queue.pop()
                state = table.load(row)
                self._report(row, state.job, rules.timed_out(state))
            return
        if now < fleet.resume_at:
            return
        running, flight, client = self._flight.running, self._flight, self._client
        while queue and len(running) < fleet.window and queue.first_due() <= now:
            row = queue.pop()
            state = table.load_counts(row)
            timeout = rules.send(state, now)
            fleet.sent(state)
            table.save_counts(row)
            flight.send(client, state.job_id, timeout, row)
            self._polls += 1

    async def _wait(self, now: float) -> None:
        """Sleep until a poll comes back, the next one is due, or the deadline."""
        flight, queue, deadline = self._flight, self._queue, self._rules.deadline
        if flight.finished:
            return
        if self._intake.waiting:
            await asyncio.sleep(0)  # more jobs to set up: let the loop run in between
            return
        wake_at = math.inf
        if queue and len(flight.running) < self._fleet.window:
            wake_at = max(queue.first_due(), self._fleet.resume_at)
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
        finished, running = self._flight.finished, self._flight.running
        while finished:
            task = finished.popleft()
            row = running.pop(task, None)
            if row is None:
                continue  # dropped on purpose by _cancel_running
            if task.cancelled():  # by someone else (a shutdown cancelling every task)
                self._queue.push(now, row)
                continue
            update = self._settle(row, task.result(), now)  # only a bug raises from result()
            if update is not None and self._on_update is not None:
                await notify(self._on_update, update)

    def _settle(self, row: int, outcome: Job | JobPollError, now: float) -> Job | None:
        """Apply the rules to a poll's outcome: the row is reported or queued again, and
        keeps what they decided (or raised) before anything is awaited; the snapshot to
        hand to `on_update`, if it is news."""
        table, rules, fleet = self._table, self._rules, self._fleet
        state = table.load(row)
        try:
            if isinstance(outcome, Job):
                fleet.answered(state)
                news, delay = rules.answered(state, outcome, now)
                if delay is None:
                    state.next_poll_at = None
                    table.save(row)
                    error = JobFailedError(outcome) if outcome.failed else None
                    self._report(row, outcome, error)
                else:
                    self._requeue(row, state, now + delay)
                return outcome if news else None
            if outcome.throttles:
                fleet.throttled(state, outcome, now)
            self._requeue(
                row, state, now + rules.failed(state, outcome, now, since=self._started_at)
            )
        except JobPollError as exc:
            table.save(row)
            if exc.stops_all:
                self._queue.push(now, row)
                raise
            # Reported, not raised: its traceback holds this frame, so the fan-out, which
            # a dropped fan-out's result would keep alive (its reader and polls running)
            # until a garbage collection.
            self._report(row, state.job, exc.with_traceback(None))
        return None

    def _requeue(self, row: int, state: JobState, due: float) -> None:
        """Keep the row's new state, and queue it for when its rules decided."""
        deadline = self._rules.deadline
        if deadline is not None and due > deadline:
            due = deadline
        state.next_poll_at = due
        self._table.save(row)
        self._queue.push(due, row)

    def _report(self, row: int, job: Job | None, error: JobPollError | None) -> None:
        self._ready.append((JobResult(self._intake.ids[row], job, error), row))

    async def _cancel_running(self) -> None:
        """Cancel the polls in flight and wait for them; those jobs are polled anew.

        The jobs are queued again before anything is awaited: a second cancellation landing
        while the polls wind down (a worker stopped twice) loses none of them.
        """
        rows = self._flight.cancel()
        now = self._rules.policy.clock()
        for row in rows:
            self._queue.push(now, row)
        await self._flight.bury()

    def checkpoint(self) -> dict[str, Any]:
        """The fan-out's pending jobs as a small, versioned, JSON-ready dict, to go on with
        them later: `wait_for_jobs(client, new_ids, resume=checkpoint)`, in this process or
        another.

        It holds every job not reported yet (each as `JobWait.checkpoint()` holds one: its
        last snapshot, schedule, counts and when its next poll is due), results ready but not
        handed out included, the ids added but not set up yet, the deadline, and the fleet's
        window and pause. A job whose poll is in flight when it is taken is due again at once
        on resuming; a job seen ended but not handed out is handed out at once, without a
        poll (one whose result was an error is polled again at once, and decided anew).
        Not in it: the jobs already reported, an async source's ids not read yet (the source
        is yours: resume with the ids it has still to give), and ids from a source that
        could never be sent. Safe to call at any moment, from any task, also once the
        fan-out is closed (after `async with`); it sends nothing. About 0.8 KB of JSON per
        waiting job.
        """
        rules, fleet, table = self._rules, self._fleet, self._table
        base = Timebase(rules.policy)
        now = base.now
        pending: list[tuple[int, float | None]] = [(row, due) for due, row in self._queue]
        pending += [(row, now) for row in self._flight.running.values()]
        for _result, row in self._ready:
            if row is not None:  # None: an id that could never be sent, nothing to wait for
                job = table.job(row)
                pending.append((row, None if job is not None and job.is_terminal else now))
        pending.sort(key=lambda item: item[0])
        states = []
        for row, due in pending:
            state = table.load(row)
            state.next_poll_at = due  # read, not saved back: the row keeps its own
            states.append(saved_state(state, base))
        header = FanoutCheckpoint(
            version=VERSION,
            taken_at=base.taken_at,
            timeout=rules.timeout,
            deadline=None if rules.deadline is None else base.to_utc(rules.deadline),
            polls=self._polls,
            window=fleet.window,
            pause_until=base.to_utc(fleet.resume_at) if fleet.resume_at > now else None,
            jobs=[],
            unstarted=self._intake.unstarted(),
        )
        return dump(header, states)

    def _restore(self, saved: FanoutCheckpoint) -> None:
        """Take the pending jobs of a checkpoint back, without polling."""
        rules = self._rules
        base = Timebase(rules.policy, saved.taken_at)
        rules.timeout = saved.timeout
        if saved.deadline is not None:
            rules.deadline = base.from_utc(saved.deadline)
        self._polls = saved.polls
        pause = saved.pause_until
        self._fleet.restore(saved.window, None if pause is None else base.from_utc(pause))
        self._intake.restored([state.job_id for state in saved.jobs])
        queued: list[tuple[float, int]] = []
        for state in saved.jobs:
            row = self._table.add(restore_state(state, base))
            job, due = state.job, state.next_poll_at
            if job is not None and job.is_terminal:
                self._report(row, job, JobFailedError(job) if job.failed else None)
            else:
                queued.append((base.now if due is None else due, row))
        self._queue.extend(queued)
        self._intake.extend(saved.unstarted)

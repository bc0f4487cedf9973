"""`wait_for_jobs`: wait on many jobs at once, bounded, isolated, and gentle with the server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import weakref
from collections import deque
from collections.abc import AsyncIterable, Callable, Generator, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import backoff

from jobpoll._checkpoint import (
    VERSION,
    FanoutCheckpoint,
    JobState,
    Timebase,
    checkpoint_errors,
    dump,
    load_fanout,
    restore_tracker,
    save_tracker,
)
from jobpoll._client import JobsClient
from jobpoll._errors import (
    ConfigurationError,
    InvalidJobId,
    JobFailedError,
    JobPollError,
    RateLimited,
    ServiceUnavailable,
)
from jobpoll._ids import all_plain_job_ids, check_job_id
from jobpoll._models import Job, JobResult
from jobpoll._policy import PollPolicy
from jobpoll._table import JobTable, Queue
from jobpoll._wait import CallbackError, Tracker, UpdateCallback, check_timeout, notify

__all__ = ["JobResult", "JobsWait", "wait_for_jobs"]

logger = logging.getLogger("jobpoll")

_DEFAULT_POLICY = PollPolicy()

#: How many jobs are set up at a time before the fan-out yields to the event loop: a slice
#: costs a few milliseconds, so taking in a million ids never stalls the loop.
_SLICE = 1000
#: How many ids read from an async source may wait to be taken in before the reading pauses.
_BACKLOG = 10 * _SLICE
#: The tasks reading async sources, held until they end: the event loop holds tasks only
#: weakly, so a fan-out collected in a reference cycle would take its pending reader with it
#: ("Task was destroyed but it is pending"); held here, the reader is cancelled by the
#: fan-out's finalizer and ends.
_READERS: set[asyncio.Task[None]] = set()


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
    they come in.

    Ids may keep coming while it runs: `job_ids` may be an async iterable (read as the
    fan-out runs; it ends once the source is exhausted and every job is reported), and
    `JobsWait.add(ids)` adds more to a fan-out that has not ended. Jobs are set up a slice at
    a time, yielding to the event loop in between, so a million ids never stall it.

    Nothing is sent until the wait is iterated or awaited. The first polls then go out at once,
    `max_in_flight` at a time. When the server answers 429 or 503, the number of requests in
    flight is halved, then grows back by one with each answer, and every job's polls pause
    together (for `Retry-After` when given, else for a pause that doubles from
    `policy.initial` up to `policy.max_interval`); a stray one (no `Retry-After`, after an
    answer that was not throttled) only halves the window.

    Args:
        client: the client to poll with.
        job_ids: the jobs to wait for (`str` or `UUID`): an iterable, read once at the call,
            or an async iterable, read as the fan-out runs. A value from an async iterable
            that could never be sent is reported as a `JobResult` of its own with an
            `InvalidJobId` error (never polled; its `job_id` is the value, or its repr when it
            is no `str`: `5` is not the job `"5"`); what the async iterable raises is raised
            from the iteration, once, and the jobs already read stay pending (iterating again
            goes on with them, without the source).
        policy: each job's schedule and rules for errors; `PollPolicy()` when None.
        timeout: the most seconds the whole fan-out may take, counted on `policy.clock` from
            its start; each job not ended by then is reported with a `WaitTimeout`.
        max_in_flight: the most requests out at any moment, however many jobs wait. By
            default the size of the client's connection pool, so requests never queue
            for a connection (their timeouts would run while they wait).
        on_update: called with every snapshot that `wait_for_job` would yield for any of the
            jobs (the first, each change, the last), e.g. to report overall progress from a
            worker; it may be a coroutine function. What it raises ends the whole fan-out and
            is raised from the iteration.
        resume: a checkpoint of a fan-out (`JobsWait.checkpoint()`, through JSON or not) to
            go on from: its pending jobs go on where they left off, and `job_ids` are added
            to them (ids the checkpoint holds are not added twice; ids reported before it
            was taken are not in it, so pass only new ones, or `[]`). The deadline is the
            checkpoint's, so `timeout` must be None; `policy` is not saved.

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
    if max_in_flight is None:
        max_in_flight = client.pool_size
    elif isinstance(max_in_flight, bool) or not isinstance(max_in_flight, int) or max_in_flight < 1:
        raise ConfigurationError(
            f"max_in_flight must be a whole number of 1 or more, got {max_in_flight!r}"
        )
    checked = [] if source is not None else _checked(job_ids, "job_ids")  # type: ignore[arg-type]
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
    fanout._extend(checked)
    fanout._source = source
    return fanout


def _checked(job_ids: Iterable[str | UUID], name: str) -> list[str]:
    """The ids as plain `str`, in order, duplicates kept; `InvalidJobId` naming the first
    bad one."""
    if isinstance(job_ids, list | tuple) and all_plain_job_ids(job_ids):
        return list(job_ids)  # checked at C speed: a million ids must not hold the loop
    checked: list[str] = []
    for position, job_id in enumerate(job_ids):
        try:
            checked.append(check_job_id(job_id))
        except JobPollError as exc:
            exc.args = (f"{name}[{position}]: {exc.args[0]}",)
            raise
    return checked


class _Entry(Tracker):
    """What the rules know of one job of a fan-out: a tracker, and how many fleet pauses had
    begun when its last poll was sent. The fan-out keeps its jobs as rows of a `JobTable`
    and loads one into an entry to apply the rules to it."""

    __slots__ = ("sent_after",)

    def __init__(self, job_id: str, policy: PollPolicy, timeout: float | None) -> None:
        super().__init__(job_id, policy, timeout)
        self.sent_after = 0


async def _poll(
    client: JobsClient, job_id: str, request_timeout: float | None
) -> Job | JobPollError:
    # The error is returned, not raised: an unretrieved exception in a task that a closed
    # fan-out dropped would be logged as a bug. Only bugs (not JobPollError) are raised.
    try:
        return await client.get_job(job_id, timeout=request_timeout)
    except JobPollError as exc:
        return exc


class _SourceError(Exception):
    """Carries what the caller's async iterable of ids raised, to be raised as itself."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(repr(error))
        self.error = error


async def _read_source(fanout: weakref.ref[JobsWait], source: AsyncIterable[Any]) -> None:
    """Read a fan-out's async iterable of ids into its intake, as they come.

    Holds the fan-out only between two ids (a fan-out dropped after a `break` is collected,
    and its finalizer cancels this task). Pauses while `_BACKLOG` ids wait to be taken in.
    """
    position = 0
    try:
        async for job_id in source:
            owner = fanout()
            if owner is None:
                return
            owner._take_from_source(job_id, position)
            position += 1
            room = owner._room_for_source()
            del owner
            if room is not None:
                await room
            elif position % _SLICE == 0:
                await asyncio.sleep(0)  # a source that never waits must not stall the loop
    except asyncio.CancelledError:
        owner = fanout()
        if owner is not None and not owner._closed:  # cancelled by someone else
            owner._source_ended(RuntimeError("the task reading job_ids was cancelled"))
        raise
    except Exception as exc:
        owner = fanout()
        if owner is not None:
            owner._source_ended(exc)
        return
    owner = fanout()
    if owner is not None:
        owner._source_ended(None)


def _throttled_reason(error: JobPollError) -> str:
    if isinstance(error, (RateLimited, ServiceUnavailable)):
        return f"the server answered {error.http_status}"
    return "the server could not be connected to"


def _fleet_pauses(policy: PollPolicy) -> Iterator[float]:
    """The pauses of the whole fleet after each throttled answer in a row: doubling from
    `policy.initial` to `policy.max_interval`."""
    pauses = backoff.expo(factor=policy.initial, max_value=policy.max_interval)
    next(pauses)  # primed, as backoff itself does
    return pauses


# The two callbacks below are held by every poll and by the alarm, so they must not hold the
# fan-out itself: a fan-out dropped after a `break` is then collected at once, and its
# finalizer cancels what is in flight.


def _wake_on_done(
    fanout: weakref.ref[JobsWait],
) -> Callable[[asyncio.Future[Job | JobPollError]], None]:
    """A poll came back: hand it over and wake the scheduler."""

    def wake(task: asyncio.Future[Job | JobPollError]) -> None:
        owner = fanout()
        if owner is not None:
            owner._finished.append(task)
            owner._wake()

    return wake


def _ring_alarm(fanout: weakref.ref[JobsWait]) -> Callable[[object], None]:
    """The alarm rang (a timer, or a sleeper task that ended): wake the scheduler."""

    def ring(source: object) -> None:
        owner = fanout()
        if owner is not None and (source is None or source is owner._alarm):
            owner._alarm, owner._alarm_at = None, math.inf
            owner._wake()

    return ring


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
    again resumes, polling those jobs anew.

    Only one task may iterate it at a time (`RuntimeError` otherwise). `add(ids)` adds jobs
    to it while it runs, from any task.
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
        # The ids given so far, in order: the first `_taken` have their row (each once); those
        # from `_read` on wait to be taken in, a slice at a time (between the two: ids already
        # moved down or dropped, cut off once every id is taken in). The call's own list is
        # kept as given, duplicates and all, up to `_sift_end`: the intake drops a repeat
        # there, with `_taken_in` (the ids taken in, only while the intake sifts). Ids added
        # later (`add()`, an async source, a checkpoint's) are checked against `_seen`, every
        # id given so far, made when first needed (`_seen_ids`): a fan-out given only a list
        # never needs it, and a set of a million ids would cost memory and time at every full
        # garbage collection (and at the call: a million ids set up without a stall).
        self._seen: set[str] | None = None
        self._job_ids: list[str] = []
        self._taken = 0
        self._read = 0
        self._sift_end = 0
        self._taken_in: set[str] | None = None
        # Values from an async source that could never be sent, by their keys among the ids:
        # reported, never polled.
        self._invalid: dict[str, JobResult] = {}
        self._source: AsyncIterable[Any] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._source_open = False  # the reader may still add ids
        self._source_error: BaseException | None = None
        self._room: asyncio.Future[None] | None = None  # the reader waits on it for room
        self._ended = False  # the iteration ended: every job reported, no more may come
        self._policy = policy
        self._timeout = timeout
        self._max_in_flight = max_in_flight
        self._on_update = on_update
        # Each job taken in is a row of the table (row i: the id `_job_ids[i]`).
        self._table = JobTable(_Entry, self._job_ids, policy, timeout)
        # Jobs waiting for their next poll, by due time then row; the polls in flight and
        # their rows.
        self._queue = Queue(self._table.dues)
        self._running: dict[asyncio.Future[Job | JobPollError], int] = {}
        # Polls (and an alarm's sleeper) cancelled but not yet seen to end: a cancellation
        # that interrupts the wait for them leaves them here, for the next step or aclose.
        self._dying: set[asyncio.Future[Any]] = set()
        self._finished: deque[asyncio.Future[Job | JobPollError]] = deque()
        # Results to hand out, with their rows: still pending, so a checkpoint holds them.
        self._ready: deque[tuple[JobResult, int]] = deque()
        self._handed_row = 0  # the row of the result handed out last
        self._wakeup: asyncio.Future[None] | None = None
        # What wakes the scheduler when no poll does: a timer on the event loop, or, with a
        # policy's own `sleep` (a virtual clock), a task sleeping with it.
        self._alarm: asyncio.TimerHandle | asyncio.Future[Any] | None = None
        self._alarm_at = math.inf
        self._on_done = _wake_on_done(weakref.ref(self))
        self._ring = _ring_alarm(weakref.ref(self))
        self._deadline: float | None = None
        self._window = max_in_flight  # lowered when the server throttles, then grown back
        self._resume_at = -math.inf  # no poll starts before this (the fleet's pause)
        self._paused = 0  # how many pauses have begun
        # Whether the last answer to a poll sent since the last pause began was throttled: a
        # throttled answer right after one that was not is taken for a stray one.
        self._throttled_last = False
        self._pauses = _fleet_pauses(policy)
        self._started = False
        self._started_at = -math.inf  # when it started here: a resumed job's first contact
        self._closed = False
        self._busy = False
        self._reported = 0
        self._polls = 0
        self._gathered: dict[int, JobResult] = {}  # what `await` collected so far, by row
        self._returned = False  # `await` returned them: from then on they are reported

    @property
    def total(self) -> int:
        """How many distinct jobs are waited for (so far, while ids may still come).

        Until every id of the call's list is set up, a repeat in a list of over 1000 ids
        not dropped yet is counted: a list without repeats sees no change.
        """
        return len(self._job_ids) - (self._read - self._taken)

    @property
    def reported(self) -> int:
        """How many results have been handed out so far: by `async for`, or returned by
        `await` (what a cancelled `await` had collected is not, and is in a checkpoint)."""
        return self._reported

    @property
    def polls(self) -> int:
        """How many requests have been sent so far, over all jobs."""
        return self._polls

    @property
    def in_flight(self) -> int:
        """How many requests are out right now."""
        return len(self._running)

    def _time_left(self) -> dict[str, float | None]:
        """Each waiting job's time left at the pace its schedule measured (`Pace.time_left`;
        None until its progress moves), by id: read-only, for a progress view."""
        now = self._policy.clock()
        table = self._table
        left: dict[str, float | None] = {}
        for row in [*(row for _due, row in self._queue), *self._running.values()]:
            entry = table.load_pace(row)
            left[entry._job_id] = None if entry._pace is None else entry._pace.time_left(now)
        return left

    def __repr__(self) -> str:
        return (
            f"<JobsWait {self._reported} of {self.total} jobs reported,"
            f" {len(self._running)} polls in flight, {self._polls} sent>"
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
        by_row = self._gathered
        async for result in self:
            by_row[self._handed_row] = result
            self._reported -= 1  # the caller's once returned; until then, still pending
        missing = self.total - len(by_row)
        if missing:
            raise RuntimeError(
                f"{missing} of the {self.total} results were not gathered: the fan-out"
                " was closed, or they were handed out by `async for` first"
            )
        if not self._returned:
            self._returned = True
            self._reported += len(by_row)
        return [by_row[row] for row in range(self._taken)]

    async def aclose(self) -> None:
        """Cancel the polls in flight and wait for them to end; no more results follow.

        Idempotent. Results already handed out stay valid. The jobs not reported are kept
        for `checkpoint()` (leaving `async with`, then checkpointing, loses none of them).
        """
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            self._dying.add(reader)
        await self._cancel_running(requeue=True)

    def __del__(self) -> None:
        # A fan-out dropped after a `break` (no `async with`) cancels what it left in flight.
        for task in [*self._running, *self._dying, self._alarm, self._reader]:
            if task is not None:
                with contextlib.suppress(RuntimeError):  # the event loop may be closed already
                    task.cancel()

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
                await self._cancel_running(requeue=True)
            except BaseException:  # cancelled meanwhile: still owed, raised at the next step
                self._source_error = source_error
                raise
        except (asyncio.CancelledError, JobPollError):
            # Cancelled, or an error about the caller's setup that every job would meet: the
            # jobs not reported stay pending, and iterating again polls them anew.
            await self._cancel_running(requeue=True)
            raise
        except BaseException:
            await self.aclose()
            raise
        finally:
            self._busy = False
        # Raised outside the handler, so that it keeps its own cause and context.
        raise source_error

    async def _next_result(self) -> JobResult:
        clock = self._policy.clock
        if self._dying:
            await self._bury()
        if not self._started and not self._closed:
            self._start(clock())
        while True:
            if self._closed:  # its pending jobs are kept only for `checkpoint()`
                raise StopAsyncIteration
            if self._read < len(self._job_ids):
                self._intake(clock())
            self._launch(clock())
            if self._ready:
                self._reported += 1
                result, self._handed_row = self._ready.popleft()
                return result
            if self._source_error is not None:
                error, self._source_error = self._source_error, None
                raise _SourceError(error)
            if not (
                self._queue or self._running or self._read < len(self._job_ids) or self._source_open
            ):
                self._ended = True
                raise StopAsyncIteration
            await self._wait(clock())
            await self._collect(clock())

    def _start(self, now: float) -> None:
        self._started, self._started_at = True, now
        if self._timeout is not None and self._deadline is None:
            self._deadline = now + self._timeout
            self._table.share(self._timeout, self._deadline)
        if self._source is not None:
            self._source_open = True
            self._reader = reader = asyncio.ensure_future(
                _read_source(weakref.ref(self), self._source)
            )
            _READERS.add(reader)
            reader.add_done_callback(_READERS.discard)
            self._source = None

    def _intake(self, now: float) -> None:
        """Set up the next slice of jobs given but not taken in yet (at most `_SLICE`: the
        scheduler yields to the event loop between two slices).

        A repeat in the call's list (before `_sift_end`) is dropped here, not at the call: the
        ids kept move down to `_taken`, so that row i stays the job `_job_ids[i]`.
        """
        table, queue, job_ids, invalid = self._table, self._queue, self._job_ids, self._invalid
        start, write = self._read, self._taken
        end = min(len(job_ids), start + _SLICE)
        sift_end, taken_in = self._sift_end, self._taken_in
        for index in range(start, end):
            job_id = job_ids[index]
            if index < sift_end:
                if taken_in is None:
                    self._taken_in = taken_in = set()
                if job_id in taken_in:
                    continue
                taken_in.add(job_id)
            if write != index:
                job_ids[write] = job_id
            row = table.add(now)  # with the fan-out's deadline, whenever it is taken in
            write += 1
            if invalid and job_id in invalid:
                self._ready.append((invalid.pop(job_id), row))
                continue
            queue.push(now, row)
        self._read, self._taken = end, write
        if end >= sift_end:
            self._taken_in = None  # the call's list is sifted: no repeat can come any more
        if end == len(job_ids) and write < end:
            del job_ids[write:]  # what was moved down or dropped
            self._read = write
        room = self._room
        if room is not None and len(job_ids) - self._read < _BACKLOG:
            self._room = None
            if not room.done():
                room.set_result(None)

    def add(self, job_ids: Iterable[str | UUID]) -> int:
        """Add jobs to wait for, to a fan-out that has not ended (running or not started).

        Ids already given (in any earlier call, the source, or the checkpoint resumed) are
        not added twice. All or none: an id that could never be sent raises `InvalidJobId`
        naming its position, and none of this call's ids is added. The new jobs are set up
        at the next step of the iteration, and polled at once.

        Returns:
            How many distinct ids were new (a repeat within `job_ids` counts once).

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
        self._seen_ids()  # each id checked against those given, so each new one counts once
        return self._extend(_checked(job_ids, "ids"))

    def _seen_ids(self) -> set[str]:
        """Every id given so far, as a set (made from the list the first time)."""
        if self._seen is None:
            self._seen = set(self._job_ids)
        return self._seen

    def _extend(self, ids: list[str]) -> int:
        """Add the ids not given before, in order; how many were new."""
        job_ids = self._job_ids
        before = len(job_ids)
        if not job_ids and self._seen is None:
            # The ids of the call. Up to a slice, without a repeat at once; more are kept as
            # given, a repeat dropped as they are set up (`_intake`), a slice at a time: a
            # million ids made distinct here would hold the loop for 0.1 s.
            if len(ids) <= _SLICE:
                job_ids.extend(dict.fromkeys(ids))
            else:
                job_ids.extend(ids)
                self._sift_end = len(job_ids)
        else:
            seen = self._seen_ids()
            for job_id in ids:
                if job_id not in seen:
                    seen.add(job_id)
                    job_ids.append(job_id)
        self._wake()
        return len(job_ids) - before

    def _take_from_source(self, value: object, position: int) -> None:
        """One id from the async source: taken in, or reported as invalid."""
        try:
            job_id = check_job_id(value)
        except InvalidJobId as exc:
            exc.args = (f"job_ids item {position} (from the async iterable): {exc.args[0]}",)
            exc.__traceback__ = None  # it holds this frame, so the fan-out: see `_collect`
            exc.job_id = value if isinstance(value, str) else repr(value)
            # Keyed apart from every id (none holds a NUL) and from each other: each value is
            # a result of its own, and no id that can be sent is ever taken for one.
            job_id = f"\x00{position}"
            self._invalid[job_id] = JobResult(exc.job_id, None, exc)
        seen = self._seen_ids()
        if job_id not in seen:
            seen.add(job_id)
            self._job_ids.append(job_id)
            self._wake()

    def _room_for_source(self) -> asyncio.Future[None] | None:
        """None while the source may go on; else a future that is done once it may."""
        if len(self._job_ids) - self._read < _BACKLOG:
            return None
        if self._room is None:
            self._room = asyncio.get_running_loop().create_future()
        return self._room

    @checkpoint_errors("the fan-out's checkpoint cannot be taken")
    def checkpoint(self) -> dict[str, Any]:
        """The fan-out's pending jobs as a small, versioned, JSON-ready dict, to go on with
        them later: `wait_for_jobs(client, new_ids, resume=checkpoint)`, in this process or
        another.

        It holds every job not reported yet (each as `JobWait.checkpoint()` holds one: its
        last snapshot, schedule, counts and when its next poll is due), results ready but not
        handed out included (also those a cancelled `await` had collected), the ids added
        but not set up yet, the deadline, and the fleet's window and pause. A job whose poll
        is in flight when it is taken is due again at once on resuming; a job seen ended but
        not handed out is handed out at once, without a poll (one whose result was an error
        is polled again at once, and decided anew). Not in it: the jobs already reported, an
        async source's ids not read yet (the source is yours: resume with the ids it has
        still to give), and ids from a source that could never be sent. Safe to call at any
        moment, from any task, also once the fan-out is closed (after `async with`); it sends
        nothing. About 0.8 KB of JSON per waiting job.
        """
        base = Timebase(self._policy)
        taken_at = base.now
        pending: list[tuple[int, dict[str, Any]]] = []
        table = self._table
        for due, row in self._queue:
            pending.append((row, save_tracker(table.load(row), base, due)))
        for row in self._running.values():
            pending.append((row, save_tracker(table.load(row), base, taken_at)))
        for result, ready in [*self._ready, *self._unreturned()]:
            if isinstance(result.error, InvalidJobId):
                continue  # a value that could never be sent: nothing to wait for
            job = table.job(ready)
            ended = job is not None and job.is_terminal
            state = save_tracker(table.load(ready), base, None if ended else taken_at)
            pending.append((ready, state))
        pending.sort(key=lambda item: item[0])
        invalid = self._invalid
        unstarted = self._job_ids[self._read :]
        taken_in = self._taken_in
        if taken_in is not None:  # the call's list is being sifted: each pending id once
            unstarted = [job_id for job_id in dict.fromkeys(unstarted) if job_id not in taken_in]
        return dump(
            FanoutCheckpoint(
                version=VERSION,
                taken_at=base.taken_at,
                timeout=self._timeout,
                deadline=None if self._deadline is None else base.to_utc(self._deadline),
                polls=self._polls,
                window=self._window,
                pause_until=base.to_utc(self._resume_at) if self._resume_at > taken_at else None,
                jobs=[JobState(**state) for _index, state in pending],
                unstarted=[job_id for job_id in unstarted if job_id not in invalid],
            )
        )

    def _unreturned(self) -> list[tuple[JobResult, int]]:
        """What a cancelled `await` collected, with the rows: pending until it is returned."""
        return [] if self._returned else [(result, row) for row, result in self._gathered.items()]

    @checkpoint_errors("not a valid wait_for_jobs checkpoint")
    def _restore(self, saved: FanoutCheckpoint) -> None:
        """Take the pending jobs of a checkpoint back, without polling."""
        policy = self._policy
        base = Timebase(policy, saved.taken_at)
        self._timeout = timeout = saved.timeout
        if saved.deadline is not None:
            self._deadline = base.from_utc(saved.deadline)
        self._table.share(timeout, self._deadline)
        self._polls = saved.polls
        self._window = max(1, min(saved.window, self._max_in_flight))
        if saved.pause_until is not None:
            self._resume_at = base.due(saved.pause_until, policy)
        seen, job_ids, table = self._seen_ids(), self._job_ids, self._table
        queued: list[tuple[float, int]] = []
        for state in saved.jobs:
            seen.add(state.job_id)
            job_ids.append(state.job_id)
            entry = _Entry(state.job_id, policy, timeout)
            due = restore_tracker(entry, state, base)
            entry._deadline = self._deadline
            row = table.add_tracker(entry)
            job = entry._job
            if job is not None and job.is_terminal:
                self._report(row, job, JobFailedError(job) if job.failed else None)
            else:
                queued.append((base.now if due is None else due, row))
        self._queue.extend(queued)
        self._read = self._taken = len(job_ids)
        self._extend(saved.unstarted)

    def _source_ended(self, error: BaseException | None) -> None:
        self._source_open = False
        self._source_error = error
        self._wake()

    def _launch(self, now: float) -> None:
        """Start the polls that are due, as far as the window and the fleet's pause allow."""
        queue, table = self._queue, self._table
        if self._deadline is not None and now >= self._deadline:
            while queue:  # nothing more may be sent: each waiting job has timed out
                row = queue.pop()
                entry = table.load_counts(row)
                self._report(row, entry._job, entry._timed_out())
            return
        if now < self._resume_at:
            return
        running, window = self._running, self._window
        client, on_done = self._client, self._on_done
        while queue and len(running) < window and queue.first_due() <= now:
            row = queue.pop()
            entry = table.load_counts(row)
            timeout = entry._request_timeout(now)
            entry.sent_after = self._paused
            table.save_counts(row)
            task = asyncio.ensure_future(_poll(client, entry._job_id, timeout))
            task.add_done_callback(on_done)
            running[task] = row
            self._polls += 1

    async def _wait(self, now: float) -> None:
        """Sleep until a poll comes back, the next one is due, or the deadline."""
        if self._finished:
            return
        if self._read < len(self._job_ids):
            await asyncio.sleep(0)  # more jobs to set up: let the loop run in between
            return
        queue = self._queue
        wake_at = math.inf
        if queue and len(self._running) < self._window:
            wake_at = max(queue.first_due(), self._resume_at)
        if queue and self._deadline is not None and not self._running:
            # With polls in flight no alarm is needed for the deadline: each request's
            # timeout is cut to the time left, so one comes back by then and wakes us. (An
            # alarm there would also let a virtual clock jump to the deadline at once.)
            wake_at = min(wake_at, self._deadline)
        if wake_at < self._alarm_at:
            self._set_alarm(wake_at, now)
        # Something is in flight or queued (else the loop would have ended), so a poll or the
        # alarm will wake us.
        self._wakeup = wakeup = asyncio.get_running_loop().create_future()
        try:
            await wakeup
        finally:
            self._wakeup = None

    def _set_alarm(self, wake_at: float, now: float) -> None:
        """Make sure the scheduler is woken at `wake_at` (on the policy's clock)."""
        if self._alarm is not None:
            self._alarm.cancel()
            if isinstance(self._alarm, asyncio.Future):
                self._dying.add(self._alarm)  # still owned: seen to end at the next step
        delay = max(0.0, wake_at - now)
        sleep = self._policy.sleep
        if sleep is asyncio.sleep:  # the default: a timer is far cheaper than a task
            self._alarm = asyncio.get_running_loop().call_later(delay, self._ring, None)
        else:
            sleeper = asyncio.ensure_future(sleep(delay))
            sleeper.add_done_callback(self._ring)
            self._alarm = sleeper
        self._alarm_at = wake_at

    def _wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def _collect(self, now: float) -> None:
        """Take in the polls that came back: report the jobs that ended, queue the others.

        Each job's fate (reported or queued again) is settled before `on_update` is awaited,
        so a cancellation that lands in the callback loses no job.

        Raises:
            JobPollError: an error about the caller's setup (`JobPollError.stops_all`); its job is
                queued again, still pending.
        """
        finished, running, table, queue = self._finished, self._running, self._table, self._queue
        while finished:
            task = finished.popleft()
            row = running.pop(task, None)
            if row is None:
                continue  # dropped on purpose by _cancel_running
            if task.cancelled():  # by someone else (a shutdown cancelling every task)
                queue.push(now, row)
                continue
            outcome = task.result()  # only a bug in jobpoll raises here
            update: Job | None = None
            # The rules run on the row loaded into an entry; whatever they decide (or raise),
            # the row keeps it before anything is awaited.
            entry = table.load(row)
            try:
                if isinstance(outcome, Job):
                    self._answered(entry, now)
                    if entry._answered(outcome, now):
                        update = outcome
                    if outcome.is_terminal:
                        table.save(row)
                        self._report(
                            row, outcome, JobFailedError(outcome) if outcome.failed else None
                        )
                    else:
                        self._requeue(row, entry, now)
                else:
                    if outcome.throttles:
                        self._throttled(entry, outcome, now)
                    entry._failed(outcome, now, since=self._started_at)
                    self._requeue(row, entry, now)
            except JobPollError as exc:
                table.save(row)
                if exc.stops_all:
                    queue.push(now, row)
                    raise
                # Reported, not raised: its traceback holds this frame, so the fan-out, which
                # a dropped fan-out's result would keep alive (its reader and polls running)
                # until a garbage collection.
                self._report(row, entry._job, exc.with_traceback(None))
                continue
            if update is not None and self._on_update is not None:
                await notify(self._on_update, update)

    def _requeue(self, row: int, entry: _Entry, now: float) -> None:
        """Keep the row's new state, and queue it for the delay its rules decided."""
        delay = entry._next_delay
        assert delay is not None
        self._table.save(row)
        due = now + delay
        if self._deadline is not None and due > self._deadline:
            due = self._deadline
        self._queue.push(due, row)

    def _report(self, row: int, job: Job | None, error: JobPollError | None) -> None:
        self._ready.append((JobResult(self._job_ids[row], job, error), row))

    def _answered(self, entry: _Entry, now: float) -> None:
        """An answer after any pause: the server copes; grow the window back by one."""
        if entry.sent_after != self._paused:
            return  # sent before the last pause began: it says nothing of the server now
        self._throttled_last = False
        if self._window < self._max_in_flight:
            self._window += 1
        if self._resume_at != -math.inf:  # the first answer after a pause: the storm is over
            self._resume_at = -math.inf
            self._pauses = _fleet_pauses(self._policy)

    def _throttled(self, entry: _Entry, error: JobPollError, now: float) -> None:
        """The server asks us to slow down (429, 503), or cannot be connected to: halve the
        window, and pause every job's polls.

        A stray throttled answer (no `Retry-After`, right after an answer that was not
        throttled) only halves the window: a server that refuses a small share of requests
        (a busy instance behind a balancer) would otherwise hold a large fan-out to one
        window per pause. A second in a row, or one with `Retry-After`, pauses the fleet.
        """
        if entry.sent_after != self._paused:
            return  # sent before the last pause began: the same storm, already paused for
        retry_after = getattr(error, "retry_after", None)
        stray, self._throttled_last = not self._throttled_last and retry_after is None, True
        if stray and self._window > 1:
            self._window //= 2
            logger.info("%s; at most %d polls in flight", _throttled_reason(error), self._window)
            return
        policy = self._policy
        pause = policy.retry_delay(next(self._pauses), retry_after)
        self._paused += 1
        self._resume_at = now + pause
        self._window = max(1, self._window // 2)
        logger.info(
            "%s; all polls pause for %.1f s, then at most %d in flight",
            _throttled_reason(error),
            pause,
            self._window,
        )

    async def _cancel_running(self, *, requeue: bool = False) -> None:
        """Cancel the polls in flight and wait for them; with `requeue`, poll those jobs anew.

        The jobs are queued again before anything is awaited: a second cancellation landing
        while the polls wind down (a worker stopped twice) loses none of them.
        """
        running, self._running = self._running, {}
        alarm, self._alarm, self._alarm_at = self._alarm, None, math.inf
        if isinstance(alarm, asyncio.Future):
            self._dying.add(alarm)
        elif alarm is not None:
            alarm.cancel()
        self._finished.clear()
        self._dying.update(running)
        for task in self._dying:
            task.cancel()
        self._wake()  # an iteration in another task must see the change (aclose from there)
        if requeue:
            now = self._policy.clock()
            for row in running.values():
                self._queue.push(now, row)
        await self._bury()

    async def _bury(self) -> None:
        """Wait for the cancelled polls to end (if cancelled meanwhile, the rest stay listed)."""
        while self._dying:
            done, _ = await asyncio.wait(self._dying)
            self._dying -= done
            for task in done:  # mark a bug's exception as seen: it was dropped on purpose
                if not task.cancelled():
                    task.exception()

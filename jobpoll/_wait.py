"""`wait_for_job`: poll one job until it ends, as an awaitable or as an async iterator."""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, Self
from uuid import UUID

from jobpoll._checkpoint import (
    VERSION,
    JobCheckpoint,
    Timebase,
    checkpoint_errors,
    dump,
    load_job,
    restore_tracker,
    save_tracker,
)
from jobpoll._client import JobsClient
from jobpoll._errors import (
    CheckpointError,
    ConfigurationError,
    JobFailedError,
    JobPollError,
    JobStalled,
    NotFound,
    TransportError,
    WaitTimeout,
)
from jobpoll._ids import check_job_id
from jobpoll._models import Job
from jobpoll._policy import Pace, PollPolicy

__all__ = ["JobWait", "wait_for_job"]

logger = logging.getLogger("jobpoll")

#: Called with each new snapshot; may be a coroutine function.
UpdateCallback = Callable[[Job], Awaitable[object] | object]

_DEFAULT_POLICY = PollPolicy()


class CallbackError(Exception):
    """Carries what a caller's `on_update` raised past jobpoll's own handling, so that no
    error of the callback's (a `JobPollError`, a `StopAsyncIteration`) is taken for one of
    jobpoll's or for the end of an iteration. Never seen by the caller: `error` is raised."""

    def __init__(self, error: Exception) -> None:
        super().__init__(repr(error))
        self.error = error


async def notify(on_update: UpdateCallback, job: Job) -> None:
    """Call (and await, if it gives an awaitable) a caller's `on_update` with a snapshot.

    Raises:
        CallbackError: the callback raised; its `error` is what to raise to the caller (a
            `StopIteration` or `StopAsyncIteration` as a `RuntimeError`, which would
            otherwise end the caller's `async for` as if all were done).
    """
    try:
        result = on_update(job)
        if inspect.isawaitable(result):
            await result
    except (StopIteration, StopAsyncIteration) as exc:
        error = RuntimeError(f"on_update raised {type(exc).__name__}")
        error.__cause__ = exc
        raise CallbackError(error) from None
    except Exception as exc:
        raise CallbackError(exc) from None


def check_timeout(timeout: float | None) -> None:
    """Refuse a `timeout` that is neither None nor a positive, finite number of seconds."""
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not 0 < timeout < math.inf
    ):
        raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")


def wait_for_job(
    client: JobsClient,
    job_id: str | UUID,
    *,
    policy: PollPolicy | None = None,
    timeout: float | None = None,
    on_update: UpdateCallback | None = None,
    resume: Mapping[str, Any] | None = None,
) -> JobWait:
    """Wait for a job to end: await the result, or iterate over its progress.

        job = await wait_for_job(client, job_id, timeout=3600)   # the final Job

        async for job in wait_for_job(client, job_id):            # each change, then the end
            print(job.status, job.progress)

    Nothing is sent until the wait is awaited or iterated; the first poll is then immediate.

    A wait can be saved and resumed, in this process or any other: `wait.checkpoint()` gives
    a JSON-ready dict, and `wait_for_job(client, job_id, resume=checkpoint)` goes on where it
    left off. The next poll comes when it would have come (at once if that time has passed;
    at most the policy's longest delay after the checkpoint was taken),
    the schedule and the deadline go on, and nothing is sent before the wait is awaited or
    iterated.

    Args:
        client: the client to poll with.
        job_id: the job to wait for.
        policy: the schedule of polls and the rules for errors; `PollPolicy()` when None.
        timeout: the most seconds the whole wait may take, counted on `policy.clock` from the
            first poll; None waits until the job ends. No poll is started that the deadline
            would cut short: the wait sleeps until the deadline and raises `WaitTimeout`. Each
            request's own timeout is cut to the time that remains.
        on_update: called with each snapshot the iterator would yield (also when awaiting),
            e.g. to report progress from a worker; it may be a coroutine function. What it
            raises ends the wait.
        resume: a checkpoint of a wait on the same job (`JobWait.checkpoint()`, through
            JSON or not) to go on from. The deadline is the checkpoint's, so `timeout` must
            be None; `policy` is not saved: pass the one the wait had.

    Returns:
        A `JobWait`.

    Raises:
        InvalidJobId: the id could never be sent (raised at once, before any poll).
        ConfigurationError: `timeout` is not a positive number of seconds, or is given with
            `resume`.
        CheckpointError: `resume` is of an unknown version, of another job, or not a valid
            checkpoint.
        TypeError: `client`, `policy` or `on_update` is not what it should be.
    """
    job_id = check_job_id(job_id)
    if not isinstance(client, JobsClient):
        raise TypeError(f"client must be a JobsClient, got {type(client).__name__}")
    if policy is not None and not isinstance(policy, PollPolicy):
        raise TypeError(f"policy must be a PollPolicy, got {type(policy).__name__}")
    if on_update is not None and not callable(on_update):
        raise TypeError(f"on_update must be callable, got {type(on_update).__name__}")
    check_timeout(timeout)
    policy = policy or _DEFAULT_POLICY
    if resume is None:
        return JobWait(client, job_id, policy, timeout, on_update)
    if timeout is not None:
        raise ConfigurationError(
            "timeout= cannot be given with resume=: the deadline is the checkpoint's"
        )
    saved = load_job(resume, job_id)
    wait = JobWait(client, job_id, policy, saved.timeout, on_update)
    wait._restore(saved)
    return wait


class Tracker:
    """What one wait knows of its job, and what it decides from it.

    The rules of a wait live here, apart from how it sleeps and sends: `JobWait` drives one
    tracker with its own loop; `wait_for_jobs` drives many from one scheduler. So a job in a
    fan-out ends exactly as it would alone. A tracker is a small record (slots, no task), so
    a hundred thousand of them fit in a few hundred megabytes.
    """

    __slots__ = (
        "_changed_at",
        "_deadline",
        "_failures",
        "_job",
        "_job_id",
        "_last_error",
        "_next_delay",
        "_pace",
        "_policy",
        "_polls",
        "_started_at",
        "_timeout",
    )

    def __init__(self, job_id: str, policy: PollPolicy, timeout: float | None) -> None:
        self._job_id = job_id
        self._policy = policy
        self._timeout = timeout
        self._pace: Pace | None = None  # None until the wait starts
        self._started_at = 0.0
        self._deadline: float | None = None
        self._next_delay: float | None = None  # None until the first poll
        self._job: Job | None = None
        self._changed_at = 0.0
        self._failures = 0
        self._last_error: JobPollError | None = None
        self._polls = 0

    @property
    def job_id(self) -> str:
        """The id of the job waited for."""
        return self._job_id

    @property
    def job(self) -> Job | None:
        """The last snapshot seen, or None before any poll got an answer."""
        return self._job

    @property
    def polls(self) -> int:
        """How many requests the wait has sent so far, failed ones included."""
        return self._polls

    def _begin(self, now: float) -> None:
        """Start the clocks at the first poll (once)."""
        if self._pace is None:
            self._pace = self._policy.pace()
            self._started_at = now
            if self._timeout is not None:
                self._deadline = now + self._timeout

    def _request_timeout(self, now: float) -> float | None:
        """Count a poll about to be sent; its timeout is the time left, if there is a deadline.

        Raises:
            WaitTimeout: the deadline has passed.
        """
        remaining = None if self._deadline is None else self._deadline - now
        if remaining is not None and remaining <= 0:
            raise self._timed_out()
        self._polls += 1
        return remaining

    def _answered(self, job: Job, now: float) -> bool:
        """Take in a poll's answer; True when it is news (first, changed or terminal).

        Raises:
            JobStalled: nothing changed for `policy.stall_timeout`.
        """
        assert self._pace is not None
        self._failures = 0
        self._last_error = None
        last, self._job = self._job, job
        if (
            last is None
            or job.progress != last.progress
            or job.raw_status != last.raw_status
            or job.is_terminal
        ):
            self._changed_at = now
            self._next_delay = None if job.is_terminal else self._pace.answered(now, job)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "job %s: %s %d%% after %d polls%s",
                    self._job_id,
                    job.raw_status,
                    job.progress,
                    self._polls,
                    "" if job.is_terminal else f", next poll in {self._next_delay:.1f} s",
                )
            return True
        stall_timeout = self._policy.stall_timeout
        if stall_timeout is not None and now - self._changed_at >= stall_timeout:
            raise JobStalled(job, now - self._changed_at)
        self._next_delay = self._pace.answered(now, job)
        return False

    def _failed(self, error: JobPollError, now: float, *, since: float = -math.inf) -> None:
        """Decide the fate of a failed poll: raise, or schedule the next one.

        `since` is when this process began polling the job: a resumed wait's client is new,
        so its first-contact grace counts from then, not from when the wait began.
        """
        assert self._pace is not None
        policy = self._policy
        visibility_delay = (
            isinstance(error, NotFound)
            and self._job is None
            and now - self._started_at < policy.not_found_grace
        )
        if not (error.transient or visibility_delay):
            raise error
        unreachable = (
            isinstance(error, TransportError) and error.never_answered and not error.reached
        )
        if unreachable and now - max(self._started_at, since) >= policy.first_contact_grace:
            raise error  # nothing has ever answered: most likely a wrong URL or port
        self._last_error = error
        if self._deadline is not None and now >= self._deadline:
            raise self._timed_out()  # e.g. the request was cut short by the deadline
        if not visibility_delay:  # the grace is bounded by its own time, not by a count
            self._failures += 1
            if self._failures >= policy.max_failures:
                raise error
        self._next_delay = policy.retry_delay(
            self._pace.failed(now), getattr(error, "retry_after", None)
        )
        if visibility_delay:
            logger.info(
                "job %s: not found yet, within the grace of %g s; next poll in %.1f s",
                self._job_id,
                policy.not_found_grace,
                self._next_delay,
            )
        else:
            logger.info(
                "job %s: %s; failure %d of at most %d in a row, next poll in %.1f s",
                self._job_id,
                error,
                self._failures,
                policy.max_failures,
                self._next_delay,
            )

    def _timed_out(self) -> WaitTimeout:
        assert self._timeout is not None
        error = WaitTimeout(
            self._job_id, timeout=self._timeout, job=self._job, last_error=self._last_error
        )
        error.__cause__ = self._last_error
        return error


class JobWait(Tracker):
    """One wait on one job, from `wait_for_job`: awaitable, and an async iterator.

    - `await wait` polls until the job ends and returns the final `Job` when it FINISHED or
      was ARCHIVED; it raises `JobFailedError` (carrying the final `Job`) when the job FAILED,
      DIED, COULDNT_START or was CANCELED.
    - `async for job in wait` yields a snapshot at the first poll and whenever the status or
      the progress changes (backwards too), then the terminal snapshot once, as the last item.
      A failed job is not an exception here: read `job.succeeded` or `job.failed`.

    Both advance the same wait: after a `break`, iterating again or awaiting picks up where it
    stopped, and once the wait is over, awaiting it again gives the same outcome. Between two
    steps it holds no task, request or connection, so a `break` leaves nothing behind.

    Errors that end the wait: `WaitTimeout`, `JobStalled`, and a poll's own error (`ApiError`,
    `TransportError`, `DecodeError`) when it is not transient, when `policy.max_failures`
    transient ones came in a row, or for a 404 past `policy.not_found_grace`.
    """

    __slots__ = (
        "_busy",
        "_client",
        "_due",
        "_error",
        "_on_update",
        "_over",
        "_polled_from",
        "_unreturned",
    )

    def __init__(
        self,
        client: JobsClient,
        job_id: str,
        policy: PollPolicy,
        timeout: float | None,
        on_update: UpdateCallback | None,
    ) -> None:
        super().__init__(job_id, policy, timeout)
        self._client = client
        self._on_update = on_update
        self._over = False
        self._error: Exception | None = None
        self._busy = False
        # A snapshot taken in but not returned yet: its on_update was cancelled.
        self._unreturned: Job | None = None
        # When the next poll is due, on the policy's clock (what a checkpoint saves): set with
        # each delay decided, None before the first.
        self._due: float | None = None
        # When this object first polled (for a resumed wait: in this process), on the clock.
        self._polled_from = -math.inf

    @property
    def done(self) -> bool:
        """True once the wait is over: the job ended, or an error ended the wait."""
        return self._over

    def __repr__(self) -> str:
        seen = f"{self._job.raw_status} {self._job.progress}%" if self._job else "not seen"
        return f"<JobWait {self._job_id!r} {seen}, {self._polls} polls>"

    def __await__(self) -> Generator[Any, None, Job]:
        return self._outcome().__await__()

    def _answered(self, job: Job, now: float) -> bool:
        news = super()._answered(job, now)
        delay = self._next_delay
        self._due = None if delay is None else now + delay
        return news

    def _failed(self, error: JobPollError, now: float, *, since: float = -math.inf) -> None:
        super()._failed(error, now, since=max(since, self._polled_from))
        assert self._next_delay is not None
        self._due = now + self._next_delay

    @checkpoint_errors("the wait's checkpoint cannot be taken")
    def checkpoint(self) -> dict[str, Any]:
        """The wait's state as a small, versioned, JSON-ready dict, to resume it later with
        `wait_for_job(client, job_id, resume=checkpoint)`, in this process or another.

        It holds the job id, the last snapshot (in the service's wire form), the schedule's
        state, the failure and poll counts, the deadline (`"deadline"`) and when the next
        poll is due (`"next_poll_at"`), both as ISO 8601 UTC times (`next_poll_at` is None
        when the wait has not started or is over), and whether the last snapshot is still
        owed to the iteration (`"owed"`: its async `on_update` was cancelled; a resumed wait
        yields it first, as this one iterated again would). A poll in flight when it is taken is due
        again at once on resuming. Safe to call at any moment, from any task; it sends nothing.

        Raises:
            CheckpointError: the wait has ended with an error: there is nothing to resume
                (or its state is no checkpoint: never a plain ValueError).
        """
        if self._error is not None:
            raise CheckpointError(
                f"the wait for job {self._job_id!r} ended with {type(self._error).__name__};"
                " there is nothing to resume"
            )
        base = Timebase(self._policy)
        due: float | None = None
        over = self._over or (self._job is not None and self._job.is_terminal)
        if self._pace is not None and not over:
            due = self._due if self._due is not None else self._started_at
        return dump(
            JobCheckpoint(
                version=VERSION,
                taken_at=base.taken_at,
                timeout=self._timeout,
                deadline=None if self._deadline is None else base.to_utc(self._deadline),
                owed=self._unreturned is not None,
                **save_tracker(self, base, due),
            )
        )

    @checkpoint_errors("not a valid wait_for_job checkpoint")
    def _restore(self, saved: JobCheckpoint) -> None:
        """Take the state of a checkpoint back, without polling."""
        base = Timebase(self._policy, saved.taken_at)
        due = restore_tracker(self, saved, base)
        self._unreturned = self._job if saved.owed else None
        if saved.deadline is not None:
            self._deadline = base.from_utc(saved.deadline)
        if self._job is not None and self._job.is_terminal:
            self._over = True
        elif due is not None:
            self._due = due
            self._next_delay = max(0.0, due - base.now)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Job:
        if self._unreturned is not None:
            job, self._unreturned = self._unreturned, None
            return job
        if self._over:
            raise StopAsyncIteration
        if self._busy:
            raise RuntimeError(f"the wait for job {self._job_id!r} is already being consumed")
        self._busy = True
        try:
            return await self._next_update()
        except CallbackError as wrapper:
            self._over, self._error, self._unreturned = True, wrapper.error, None
            raise wrapper.error from None
        except Exception as exc:  # CancelledError is no Exception: a cancelled wait can resume
            self._over, self._error, self._unreturned = True, exc, None
            raise
        finally:
            self._busy = False

    async def _outcome(self) -> Job:
        self._unreturned = None  # awaited for the outcome: no snapshot is owed any more
        while not self._over:
            await self.__anext__()
        if self._error is not None:
            raise self._error
        job = self._job
        assert job is not None
        if job.failed:
            raise JobFailedError(job)
        return job

    async def _next_update(self) -> Job:
        clock = self._policy.clock
        now = clock()
        self._begin(now)
        if self._polled_from == -math.inf:  # this object's first step
            self._polled_from = now
            if self._due is not None:  # resumed: its next poll is due at a set time, also
                self._next_delay = max(0.0, self._due - now)  # when awaited a while later
        while True:
            if self._next_delay is not None:
                await self._pause(self._next_delay)
            timeout = self._request_timeout(clock())
            try:
                job = await self._client.get_job(self._job_id, timeout=timeout)
            except JobPollError as exc:
                self._failed(exc, clock())
                continue
            if self._answered(job, clock()):
                self._over = job.is_terminal
                if self._on_update is not None:
                    # Cancelled while the callback runs, the snapshot is still the next one
                    # handed out: the iteration resumes with it rather than skip a change.
                    self._unreturned = job
                    await notify(self._on_update, job)
                    self._unreturned = None
                return job

    async def _pause(self, delay: float) -> None:
        """Sleep until the next poll, or until the deadline and raise `WaitTimeout`."""
        policy = self._policy
        if self._deadline is not None:
            remaining = self._deadline - policy.clock()
            if delay >= remaining:
                if remaining > 0:
                    await policy.sleep(remaining)
                raise self._timed_out()
        await policy.sleep(delay)

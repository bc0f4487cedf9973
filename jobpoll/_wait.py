"""`wait_for_job`: poll one job until it ends, as an awaitable or as an async iterator."""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Awaitable, Callable, Generator, Mapping
from typing import Any, Self
from uuid import UUID

from jobpoll._checkpoint import job_checkpoint, resume_job
from jobpoll._client import JobsClient
from jobpoll._errors import CheckpointError, ConfigurationError, JobFailedError, JobPollError
from jobpoll._ids import check_job_id
from jobpoll._models import Job
from jobpoll._policy import PollPolicy
from jobpoll._rules import Rules, check_timeout
from jobpoll._state import JobState

logger = logging.getLogger("jobpoll")

#: Called with each new snapshot; may be a coroutine function.
UpdateCallback = Callable[[Job], Awaitable[object] | object]

_DEFAULT_POLICY = PollPolicy()


class CallbackError(Exception):
    """Carries what `on_update` raised past jobpoll's own handling, where it would be taken for
    jobpoll's error or the end of an iteration; the caller gets `error`."""

    def __init__(self, error: Exception) -> None:
        super().__init__(repr(error))
        self.error = error


async def notify(on_update: UpdateCallback, job: Job) -> None:
    """Raises `CallbackError` for what `on_update` raised; a `StopIteration` or
    `StopAsyncIteration` as a `RuntimeError`, lest it end the caller's `async for`."""
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
    `wait.checkpoint()` saves a wait, and `resume=` goes on with it: its next poll comes when
    it was due (at once if that has passed), and its schedule and deadline go on.

    Args:
        client: the client to poll with.
        job_id: the job to wait for.
        policy: the schedule of polls and the rules for errors (`PollPolicy()`).
        timeout: the most seconds the whole wait may take, counted on `policy.clock` from the
            first poll (None: no limit). A poll the deadline would cut short is not started:
            the wait sleeps until the deadline and raises `WaitTimeout`; each request's own
            timeout is cut to the time that remains.
        on_update: called with each snapshot the iterator would yield (also when awaiting),
            e.g. to report progress from a worker; it may be a coroutine function. What it
            raises ends the wait.
        resume: a checkpoint of a wait on the same job (`JobWait.checkpoint()`, through JSON
            or not), with `timeout` None; `policy` is not saved: pass the one the wait had.

    Raises:
        InvalidJobId: the id could never be sent (raised at once, before any poll).
        ConfigurationError: `timeout` is not a positive number of seconds, or is given with
            `resume`.
        CheckpointError: `resume` is of an unknown version, of another job, or not a valid
            checkpoint.
        TypeError: `client`, `policy` or `on_update` is not what it should be.
    """
    job_id = check_job_id(job_id)
    policy = check_wait_options(client, policy, timeout, on_update, resume)
    if resume is None:
        return JobWait(client, Rules(policy, timeout), JobState(job_id=job_id), on_update)
    rules, state, owed = resume_job(resume, job_id, policy)
    return JobWait(client, rules, state, on_update, owed=owed)


def check_wait_options(
    client: object, policy: object, timeout: float | None, on_update: object, resume: object
) -> PollPolicy:
    """The policy `wait_for_job` or `wait_for_jobs` uses, once its options are checked."""
    if not isinstance(client, JobsClient):
        raise TypeError(f"client must be a JobsClient, got {type(client).__name__}")
    if policy is not None and not isinstance(policy, PollPolicy):
        raise TypeError(f"policy must be a PollPolicy, got {type(policy).__name__}")
    if on_update is not None and not callable(on_update):
        raise TypeError(f"on_update must be callable, got {type(on_update).__name__}")
    check_timeout(timeout)
    if resume is not None and timeout is not None:
        raise ConfigurationError(
            "timeout= cannot be given with resume=: the deadline is the checkpoint's"
        )
    return policy or _DEFAULT_POLICY


class JobWait:
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

    def __init__(
        self,
        client: JobsClient,
        rules: Rules,
        state: JobState,
        on_update: UpdateCallback | None,
        *,
        owed: bool = False,
    ) -> None:
        self._state = state
        self._rules = rules
        self._client = client
        self._on_update = on_update
        self._error: Exception | None = None
        self._busy = False
        # A snapshot taken in but not returned yet: its on_update was cancelled (a resumed
        # wait's, when its checkpoint says so, is yielded first as this wait's would be).
        self._unreturned = state.job if owed else None
        # When this object first polled (for a resumed wait: in this process), on the clock.
        self._polled_from = -math.inf
        # The delay before the next poll, decided by the rules; None before the first.
        self._delay: float | None = None

    @property
    def job_id(self) -> str:
        """The id of the job waited for."""
        return self._state.job_id

    @property
    def job(self) -> Job | None:
        """The last snapshot seen, or None before any poll got an answer."""
        return self._state.job

    @property
    def polls(self) -> int:
        """How many requests the wait has sent so far, failed ones included."""
        return self._state.polls

    @property
    def done(self) -> bool:
        """True once the wait is over: the job ended, or an error ended the wait."""
        job = self._state.job
        return self._error is not None or (job is not None and job.is_terminal)

    def __repr__(self) -> str:
        job = self._state.job
        seen = f"{job.raw_status} {job.progress}%" if job else "not seen"
        return f"<JobWait {self.job_id!r} {seen}, {self.polls} polls>"

    def __await__(self) -> Generator[Any, None, Job]:
        return self._outcome().__await__()

    def checkpoint(self) -> dict[str, Any]:
        """The wait's state as a small, versioned, JSON-ready dict, to go on with it by
        `wait_for_job(client, job_id, resume=checkpoint)`, in this process or another.

        It holds the job id, the last snapshot (in the service's wire form), the schedule's
        state, the counts, the `"deadline"` and when the next poll is due (`"next_poll_at"`,
        None before the start and after the end) as ISO 8601 UTC times, and whether the last
        snapshot is `"owed"` to the iteration (its async `on_update` was cancelled; a resumed
        wait yields it first). A poll in flight is due again at once on resuming. Safe to
        call at any moment, from any task; it sends nothing.

        Raises:
            CheckpointError: the wait ended with an error (nothing to resume), or its state
                cannot be saved.
        """
        if self._error is not None:
            raise CheckpointError(
                f"the wait for job {self.job_id!r} ended with {type(self._error).__name__};"
                " there is nothing to resume"
            )
        return job_checkpoint(self._rules, self._state, owed=self._unreturned is not None)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Job:
        if self._unreturned is not None:
            job, self._unreturned = self._unreturned, None
            return job
        if self.done:
            raise StopAsyncIteration
        if self._busy:
            raise RuntimeError(f"the wait for job {self.job_id!r} is already being consumed")
        self._busy = True
        try:
            return await self._next_update()
        except CallbackError as wrapper:
            self._error, self._unreturned = wrapper.error, None
            raise wrapper.error from None
        except Exception as exc:  # CancelledError is no Exception: a cancelled wait can resume
            self._error, self._unreturned = exc, None
            raise
        finally:
            self._busy = False

    async def _outcome(self) -> Job:
        self._unreturned = None  # awaited for the outcome: no snapshot is owed any more
        while not self.done:
            await self.__anext__()
        if self._error is not None:
            raise self._error
        job = self._state.job
        assert job is not None
        if job.failed:
            raise JobFailedError(job)
        return job

    async def _next_update(self) -> Job:
        state, rules, clock = self._state, self._rules, self._rules.policy.clock
        now = clock()
        if self._polled_from == -math.inf:  # this object's first step
            self._polled_from = now
            if state.next_poll_at is not None:  # resumed: its next poll is due at a set
                self._delay = max(0.0, state.next_poll_at - now)  # time, also when awaited late
        rules.begin(state, now)
        while True:
            if self._delay is not None:
                await self._pause(self._delay)
            timeout = rules.send(state, clock())
            try:
                job = await self._client.get_job(state.job_id, timeout=timeout)
            except JobPollError as exc:
                now = clock()
                self._delay = rules.failed(state, exc, now, since=self._polled_from)
                state.next_poll_at = now + self._delay
                continue
            now = clock()
            news, self._delay = rules.answered(state, job, now)
            state.next_poll_at = None if self._delay is None else now + self._delay
            if news:
                if self._on_update is not None:
                    # Cancelled while the callback runs, the snapshot is still the next one
                    # handed out: the iteration resumes with it rather than skip a change.
                    self._unreturned = job
                    await notify(self._on_update, job)
                    self._unreturned = None
                return job

    async def _pause(self, delay: float) -> None:
        """Sleep until the next poll, or until the deadline and raise `WaitTimeout`."""
        rules = self._rules
        policy = rules.policy
        if rules.deadline is not None:
            remaining = rules.deadline - policy.clock()
            if delay >= remaining:
                if remaining > 0:
                    await policy.sleep(remaining)
                raise rules.timed_out(self._state)
        await policy.sleep(delay)

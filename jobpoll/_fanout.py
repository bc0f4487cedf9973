"""`wait_for_jobs`: wait on many jobs at once, bounded, isolated, and gentle with the server;
`JobsWait` hands out, checkpoints and restores what its `Scheduler` decides."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Generator, Iterable, Mapping
from typing import Any, Self
from uuid import UUID

from jobpoll._checkpoint import (
    VERSION,
    FanoutCheckpoint,
    checkpoint_errors,
    dump,
    load_fanout,
)
from jobpoll._client import JobsClient
from jobpoll._config import check_positive
from jobpoll._errors import InvalidJobId, JobFailedError, JobPollError
from jobpoll._intake import checked_ids
from jobpoll._models import JobResult
from jobpoll._pace import time_left
from jobpoll._policy import PollPolicy
from jobpoll._rules import Rules
from jobpoll._saved import Timebase, restore_state, saved_state
from jobpoll._scheduler import Scheduler, SourceError
from jobpoll._wait import CallbackError, UpdateCallback, check_wait_options


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

    Each job ends as `wait_for_job` would end it alone, but its error is reported in its
    `JobResult` instead of raised: one job's failure never stops the others. Duplicate ids
    are polled and reported once, however they come in.

    Args:
        client: the client to poll with.
        job_ids: the jobs (`str` or `UUID`): an iterable, read at the call, or an async
            iterable, read as the fan-out runs: a value of it that could never be sent is
            reported with an `InvalidJobId`, its `job_id` the value if a `str`, else its
            repr after a NUL (`"\\x005"` for `5`), never a job's id; what it raises is
            raised from the iteration, once, and the jobs read stay pending.
        policy: each job's schedule and rules for errors; `PollPolicy()` when None.
        timeout: the most seconds the whole fan-out may take, from its start on
            `policy.clock`; each job not ended by then is reported with a `WaitTimeout`.
        max_in_flight: the most requests out at once; the client's `pool_size` when None.
        on_update: called (or awaited) with every snapshot `wait_for_job` would yield for any
            of the jobs; what it raises ends the fan-out and is raised from the iteration.
        resume: a fan-out's checkpoint (`JobsWait.checkpoint()`) to go on from, `job_ids`
            added to its jobs (pass only new ones), with its deadline; `policy` is not saved.

    Raises:
        InvalidJobId: an id of an iterable could never be sent (the message says which).
        ConfigurationError: an option out of range, or `timeout` beside `resume`.
        CheckpointError: `resume` is not a valid checkpoint.
        TypeError: `client`, `job_ids`, `policy` or `on_update` is not what it should be.
    """
    source = job_ids if isinstance(job_ids, AsyncIterable) else None
    if source is None:
        wanted = "job_ids must be an iterable or async iterable of job ids"
        _refuse_one_id(job_ids, wanted, "use wait_for_job or a list of one")
    policy = check_wait_options(client, policy, timeout, on_update, resume)
    checked = [] if source is not None else checked_ids(job_ids, "job_ids")  # type: ignore[arg-type]
    saved = None if resume is None else load_fanout(resume)
    if max_in_flight is not None:
        check_positive("max_in_flight", max_in_flight, whole=True)
    window = client.pool_size if max_in_flight is None else max_in_flight
    fanout = JobsWait(Scheduler(client, Rules(policy, timeout), window, on_update))
    if saved is not None:
        fanout._restore(saved)
    fanout._jobs.intake.extend(checked)
    fanout._jobs.source = source
    return fanout


def _refuse_one_id(job_ids: object, wanted: str, hint: str = "a list of one") -> None:
    if isinstance(job_ids, (str, bytes, UUID)) or not isinstance(job_ids, Iterable):
        raise TypeError(f"{wanted}, got {type(job_ids).__name__} (for one id, {hint})")


class JobsWait:
    """Many jobs waited for at once, from `wait_for_jobs`.

    - `async for result in fanout` yields one `JobResult` per distinct job, as they end.
    - `async with fanout as results:` cancels the polls still in flight on exit; a `break`
      out of a plain `async for` does the same once the fan-out is dropped.
    - `await fanout` returns every result, in the order the ids were given.

    Polls are sent only while it is iterated (or awaited), by one task at a time
    (`RuntimeError` otherwise). Cancelling that task cancels the polls in flight; iterating
    again polls those jobs anew. Ids may keep coming, from an async iterable (it ends once
    that is exhausted and every job reported) and from `add(ids)`; they are set up a slice
    at a time, so a million ids never stall the event loop. At most `max_in_flight` polls
    are out at once. How fast they leave is the client's: it learns the rate the service
    accepts from its refusals (429, 503) and holds every request it sends to it, this
    fan-out's and any other's (see `JobsClient`'s `max_rate`).
    """

    def __init__(self, jobs: Scheduler) -> None:
        self._jobs = jobs
        self._busy = False
        self._reported = 0
        self._row = 0  # the row of the result handed out last
        self._gathered: dict[int, JobResult] = {}  # what `await` collected so far, by row
        self._returned = False  # `await` returned them: from then on they are reported

    @property
    def total(self) -> int:
        """How many distinct jobs are waited for (so far, while ids may still come); a
        repeat in a list of over 1000 ids counts until it is set up."""
        return self._jobs.intake.total

    @property
    def reported(self) -> int:
        """How many results have been handed out so far: by `async for`, or returned by
        `await` (what a cancelled `await` had collected is not, and is in a checkpoint)."""
        return self._reported

    @property
    def polls(self) -> int:
        """How many requests have been sent so far, over all jobs."""
        return self._jobs.polls

    @property
    def in_flight(self) -> int:
        """How many requests are out right now."""
        return len(self._jobs.flight.running)

    def time_left(self) -> dict[str, float | None]:
        """Each waiting job's time left at the pace its schedule measured (None until its
        progress moves), by id: read-only, for a progress view."""
        jobs = self._jobs
        now = jobs.rules.policy.clock()
        ids = jobs.intake.ids
        waiting = [*jobs.queue, *jobs.flight.running.values()]
        return {ids[row]: time_left(jobs.table.load_pace(row), now) for row in waiting}

    def __repr__(self) -> str:
        return (
            f"<JobsWait {self._reported} of {self.total} jobs reported,"
            f" {self.in_flight} polls in flight, {self.polls} sent>"
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    def __await__(self) -> Generator[Any, None, list[JobResult]]:
        return self._gather().__await__()

    async def _gather(self) -> list[JobResult]:
        # Kept on the fan-out: awaited again after a cancellation or an error about the
        # setup, it goes on with the jobs still pending (and __anext__ leaves none in flight).
        by_row = self._gathered
        async for result in self:
            by_row[self._row] = result
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
        return [by_row[row] for row in range(self._jobs.intake.taken)]

    async def aclose(self) -> None:
        """Cancel the polls in flight and wait for them to end; no more results follow.
        Idempotent. The jobs not reported are kept for `checkpoint()`."""
        await self._jobs.close()

    def __del__(self) -> None:
        # A fan-out dropped after a `break` (no `async with`) cancels what it left in flight.
        self._jobs.drop()

    def add(self, job_ids: Iterable[str | UUID]) -> int:
        """Add jobs to wait for, to a fan-out that has not ended, from any task, and return
        how many distinct ids were new (ids given before are not added twice). All or none:
        an id that could never be sent raises `InvalidJobId` naming its position, and none
        is added. They are polled from the next step of the iteration.

        Raises:
            InvalidJobId: one of the ids could never be sent.
            RuntimeError: the fan-out has ended (every job reported, no more ids to come) or
                was closed.
            TypeError: `job_ids` is a single id, or not an iterable.
        """
        _refuse_one_id(job_ids, "add() takes an iterable of job ids")
        if self._jobs.closed or self._jobs.ended:
            raise RuntimeError("this fan-out has ended: ids can no longer be added")
        return self._jobs.intake.add(checked_ids(job_ids, "ids"))

    async def __anext__(self) -> JobResult:
        if self._busy:
            raise RuntimeError("this fan-out is already being iterated by another task")
        self._busy = True
        try:
            result, self._row = await self._jobs.next_outcome()
            self._reported += 1
            return result
        except CallbackError as wrapper:  # a bug in on_update: raised as itself
            await self.aclose()
            raise wrapper.error from None
        except SourceError as wrapper:  # what the async iterable of ids raised
            source_error = wrapper.error
        except (asyncio.CancelledError, JobPollError):
            # Cancelled, or an error about the caller's setup that every job would meet: the
            # jobs not reported stay pending, and iterating again polls them anew.
            await self._jobs.cancel_running()
            raise
        except BaseException:
            await self.aclose()
            raise
        finally:
            self._busy = False
        # Raised outside the handler, so that it keeps its own cause and context.
        raise source_error

    @checkpoint_errors("the fan-out's checkpoint cannot be taken")
    def checkpoint(self) -> dict[str, Any]:
        """The fan-out's pending jobs as a versioned, JSON-ready dict, to go on with them
        later, here or in another process: `wait_for_jobs(client, new_ids, resume=...)`.

        It holds every job not reported yet (as `JobWait.checkpoint()` holds one), results
        not handed out (also those a cancelled `await` had collected), the ids not set up
        yet, the deadline, and what the client learned of the service's rate limit (a
        resumed fan-out starts at that rate). On resuming, a job whose poll
        was in flight, or whose result was an error, is polled at once; one seen ended is
        handed out at once. Not in it: the jobs reported, an async source's ids not read
        yet (resume with those), and values that could never be sent. Safe at any moment,
        from any task, also once closed; it sends nothing. About 0.9 KB of JSON per job.
        """
        jobs = self._jobs
        rules, table = jobs.rules, jobs.table
        base = Timebase(rules.policy)
        now = base.now
        states = []
        for row, due in self._pending(now):
            state = table.load(row)
            state.next_poll_at = due  # read, not saved back: the row keeps its own
            states.append(saved_state(state, base))
        header = FanoutCheckpoint(
            version=VERSION,
            taken_at=base.taken_at,
            timeout=rules.timeout,
            deadline=None if rules.deadline is None else base.to_utc(rules.deadline),
            polls=jobs.polls,
            rate=None,
            jobs=[],
            unstarted=jobs.intake.unstarted(),
        )
        data = dump(header, states)
        learned = jobs.client.learned_rate(now)
        if learned is not None:  # its times moved by the one rule, as the jobs' are
            data["rate"] = saved_state(learned, base)
        return data

    def _pending(self, now: float) -> list[tuple[int, float | None]]:
        """The rows of the jobs not reported, each with when its next poll is due."""
        jobs = self._jobs
        dues = jobs.table.dues
        pending: list[tuple[int, float | None]] = [(row, dues[row]) for row in jobs.queue]
        pending += [(row, now) for row in jobs.flight.running.values()]
        ready = list(jobs.ready)
        if not self._returned:  # what a cancelled `await` collected is pending until returned
            ready += [(result, row) for row, result in self._gathered.items()]
        for result, row in ready:
            if isinstance(result.error, InvalidJobId):
                continue  # a value that could never be sent: nothing to wait for
            job = jobs.table.job(row)
            pending.append((row, None if job is not None and job.is_terminal else now))
        return sorted(pending, key=lambda item: item[0])

    @checkpoint_errors("not a valid wait_for_jobs checkpoint")
    def _restore(self, saved: FanoutCheckpoint) -> None:
        jobs = self._jobs
        rules = jobs.rules
        base = Timebase(rules.policy, saved.taken_at)
        rules.timeout = saved.timeout
        if saved.deadline is not None:
            rules.deadline = base.from_utc(saved.deadline)
        jobs.polls = saved.polls
        if saved.rate is not None:
            jobs.client.resume_rate(restore_state(saved.rate, base), base.now)
        jobs.intake.restored([state.job_id for state in saved.jobs])
        for state in saved.jobs:
            row = jobs.table.add(restore_state(state, base))
            job, due = state.job, state.next_poll_at
            if job is not None and job.is_terminal:
                jobs.report(row, job, JobFailedError(job) if job.failed else None)
            else:
                jobs.queue.push(base.now if due is None else due, row)
        jobs.intake.extend(saved.unstarted)

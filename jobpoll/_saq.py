"""`SaqWaits`: waits that outlive their process, as chains of SAQ jobs on Redis.

Each link (`_saq_poll.Link`) makes one poll by the rules (`_rules`), at its turn under the
rate every worker of the queue shares (`_saq_rate`), then hands the wait's checkpoint to the
next link, due when the next poll is, or its outcome (`_saq_links` keeps the records). A
wait's times are on Redis's clock, which every worker mirrors (`FleetRate.now`): a worker's
own wall clock, however far off, moves no due time and no deadline. A dead worker's links are
handed on by the others (`_saq_rescue`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import Any
from uuid import UUID

import attrs
from saq import Job as SaqJob
from saq import Queue
from saq.queue.redis import RedisQueue

from jobpoll._client import JobsClient, redactor_of
from jobpoll._config import check_positive
from jobpoll._ids import check_job_id
from jobpoll._models import JobResult
from jobpoll._policy import PollPolicy
from jobpoll._rules import check_timeout
from jobpoll._saq_books import Ended, LinkQueue, booked
from jobpoll._saq_links import POLL_FUNCTION, Links
from jobpoll._saq_logs import SaqLines
from jobpoll._saq_mend import Mending
from jobpoll._saq_outage import Outage, PatientQueue
from jobpoll._saq_outcomes import Outcomes, Undelivered
from jobpoll._saq_overview import QueueOverview, read_overview
from jobpoll._saq_poll import Link
from jobpoll._saq_rate import FleetRate
from jobpoll._saq_redis import DURABILITIES, Durability, RedisGuard
from jobpoll._saq_rescue import Rescue, mend_forever
from jobpoll._saq_results import outcomes_of
from jobpoll._tasks import stop

logger = logging.getLogger("jobpoll")


class SaqWaits:
    """Waits on CDQ jobs that live in a SAQ queue on Redis, shared by any number of workers.

        waits = SaqWaits(Queue.from_url("redis://localhost"), on_outcome="job_ended")
        await waits.submit(job_ids, timeout=3600)       # from any process
        result = await waits.result(job_id)             # from any process
        settings = waits.worker_settings(client=make_client, functions=[job_ended])

    Build it alike in every process (same queue name, same `on_outcome`): they share only
    Redis. The guide "Workers on SAQ" (docs/guides/saq.md) tells how a wait moves.

    Args:
        queue: a SAQ queue on Redis (`saq.Queue.from_url("redis://...")`, a `RedisQueue`).
        on_outcome: the name of a SAQ function of your workers that each outcome is enqueued
            to, once per job id, as `on_outcome(ctx, *, result: dict)` (read it with
            `load_result(result)`); None: outcomes are only kept for `result()`.
        policy: each wait's schedule and rules for errors (`PollPolicy()` when None), with the
            real `clock` and `sleep`: a wait moves between processes. Its times are taken on
            Redis's clock (its `wall_clock` is not read).
        poll_timeout: seconds a link may run from its begin (the worker's `before_process` hooks
            included), after which it is cut short and SAQ runs it again;
            keep it above the client's request timeout plus a second (a poll may wait that
            long for its turn under the fleet's rate). A dead worker's links are run again
            sooner, within 15 s (`_saq_rescue`).
        outcome_ttl: seconds an outcome is kept for `result()`; for as long, submitting its id
            again does nothing.
        outcome_retries, outcome_timeout: how many times SAQ tries to deliver an outcome (its
            `retries`), and how long each try waits for the call (a plain `def` call that
            outlives it runs on in its thread, and the next try waits for it).
        mend_interval: how often (seconds) a worker enqueues again the links SAQ lost (see
            `mend`).
        max_rate: the most polls a second all the queue's workers send together, for a user
            who knows the key's quota; None: no ceiling. Either way the workers learn the
            rate the service accepts from its refusals (429, 503) and share it through
            Redis; give every worker the same.
        durability: what Redis must show (read once, at a worker's start or the first
            `submit()`, else `QueueNotDurable`): "checked", no eviction and AOF or RDB on;
            "volatile-accepted", no eviction (a restart loses every wait); "declared", what
            Redis does not let be read is as you declare (docs/guides/saq.md: "What Redis
            must keep").

    Raises:
        ConfigurationError: the queue does not write its jobs as JSON (it was made with its
            own `dump` and `load`): jobpoll's scripts write its links as SAQ's default does.

    Redis's own errors are raised as `QueueUnavailable`s.
    """

    def __init__(
        self,
        queue: Queue,
        *,
        on_outcome: str | None,
        policy: PollPolicy | None = None,
        poll_timeout: float = 60.0,
        outcome_ttl: float = 7 * 86400.0,
        outcome_retries: int = 3,
        outcome_timeout: float = 60.0,
        mend_interval: float = 60.0,
        max_rate: float | None = None,
        durability: Durability = "checked",
    ) -> None:
        if not isinstance(queue, RedisQueue):
            raise TypeError(f"queue must be a saq RedisQueue, got {type(queue).__name__}")
        if policy is not None and not isinstance(policy, PollPolicy):
            raise TypeError(f"policy must be a PollPolicy, got {type(policy).__name__}")
        for name, value in (
            ("poll_timeout", poll_timeout),
            ("outcome_ttl", outcome_ttl),
            ("outcome_timeout", outcome_timeout),
            ("mend_interval", mend_interval),
        ):
            check_positive(name, value)
            if value < 1:
                raise ValueError(f"{name} must be at least 1 second, got {value!r}")
        if max_rate is not None:
            check_positive("max_rate", max_rate)
        if durability not in DURABILITIES:
            raise ValueError(f"durability must be one of {DURABILITIES}, got {durability!r}")
        self.queue: RedisQueue = queue
        self.on_outcome = on_outcome
        self.policy = policy or PollPolicy()
        self.mend_interval = mend_interval
        self._links = Links(queue=queue, poll_timeout=poll_timeout, outcome_ttl=outcome_ttl)
        self._outcomes = Outcomes(
            links=self._links,
            function=on_outcome,
            retries=outcome_retries,
            timeout=outcome_timeout,
        )
        self._saq_lines = SaqLines([] if on_outcome is None else [on_outcome])
        self._rate = FleetRate(max_rate, self.policy.clock)
        self._guard = RedisGuard(queue.redis, queue.name, self._links.prefix + "epoch", durability)
        #: The policy the links apply: its times on Redis's clock, as this worker mirrors it.
        self._fleet_policy = attrs.evolve(
            self.policy, clock=self._rate.now, wall_clock=self._rate.now
        )
        self._rescue = Rescue(links=self._links)
        self._mending = Mending(self._links)
        self._upkeep: list[asyncio.Task[None]] = []
        self._client: JobsClient | None = None

    def __repr__(self) -> str:
        return f"<SaqWaits queue={self.queue.name!r} on_outcome={self.on_outcome!r}>"

    async def submit(
        self,
        job_ids: Iterable[str | UUID],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the waits' deadline, not this call's
    ) -> list[bool]:
        """Start waiting on jobs, in the workers; per id, whether a wait started (not for an
        id already waited for, or whose outcome is still kept, whoever submitted it).

        Args:
            job_ids: the jobs (`str` or `UUID`); each is checked before anything is sent.
            timeout: the most seconds each wait may take, from its first poll; None: until
                the job ends.

        Raises:
            InvalidJobId: an id could never be sent (nothing is submitted then).
            QueueNotDurable: Redis would lose the waits (see `durability`).
        """
        if isinstance(job_ids, str | bytes | UUID):
            raise TypeError("job_ids must be an iterable of job ids (for one, a list of one)")
        check_timeout(timeout)
        ids = [check_job_id(job_id) for job_id in job_ids]
        with self._guard.mapped():
            await self._guard.ready()
            return await self._links.submit(ids, timeout)

    async def results(self, job_ids: Iterable[str | UUID]) -> AsyncGenerator[JobResult, None]:
        """The outcome of each job, as each is over (from any process, submitted or not yet);
        bound the wait with `asyncio.timeout(...)`.

        Raises:
            JobPollError: a worker's setup error (`stops_all`: a refused key, a service never
                reached) met at the last poll of one of these jobs; its wait goes on.
            QueueDataLost: Redis lost the queue's data since this process last saw it, and
                the wait on one of these jobs with it (not submitted again since).
        """
        pending = {check_job_id(job_id) for job_id in job_ids}
        async with contextlib.aclosing(outcomes_of(self._links, self._guard, pending)) as each:
            async for result in each:
                yield result

    async def result(self, job_id: str | UUID) -> JobResult:
        """The outcome of one job, once it is over (from any process); bound the wait with
        `asyncio.timeout(...)`.

        Raises:
            JobPollError: a worker's setup error met at the job's last poll (see `results()`).
        """
        async with contextlib.aclosing(self.results([job_id])) as results:
            return await anext(results)

    async def delivered(self) -> int:
        """How many outcomes were delivered, in all: a call of `on_outcome` returned (with no
        `on_outcome`: the outcome was kept), counted once per job id."""
        with self._guard.mapped():
            return await self._outcomes.delivered()

    async def undelivered(self) -> list[Undelivered]:
        """The outcomes not delivered, by job id: each call of `on_outcome` failed and SAQ's
        retries are spent (or the outcome's job was lost); with the last failed call's error.
        Reads every wait's record (a Redis command each)."""
        with self._guard.mapped():
            return await self._outcomes.undelivered()

    async def redeliver(self, job_ids: Iterable[str | UUID] | None = None) -> list[str]:
        """Enqueue again to `on_outcome` each undelivered outcome of `job_ids` (None: all of
        them), with SAQ's retries anew; the job ids whose outcome was (the others: delivered,
        queued for delivery, still waited for or not known)."""
        if job_ids is None:
            wanted = [entry.job_id for entry in await self.undelivered()]
        else:
            wanted = [check_job_id(job_id) for job_id in job_ids]
        with self._guard.mapped():
            return await self._outcomes.redeliver(wanted)

    async def forget(self, job_id: str | UUID) -> bool:
        """Delete the job's kept outcome, delivered or not, so that its id can be submitted
        again; whether one was kept.

        Raises:
            OutcomePending: the job is still waited for, or its outcome is queued for delivery
                (forget it once it is delivered, or undelivered).
        """
        checked = check_job_id(job_id)
        with self._guard.mapped():
            return await self._outcomes.forget(checked)

    async def overview(self) -> QueueOverview:
        """The queue's waits for an operator, read without changing anything: how many are
        due, scheduled, in flight, stuck or lost, the outcomes delivered and not, the oldest
        wait's age, and the fleet's rate (`QueueOverview`; `jobpoll queue` prints it). Its
        cost grows with the queue, never past a few Redis commands per wait."""
        with self._guard.mapped():
            return await read_overview(self._links)

    def worker_settings(
        self,
        *,
        client: Callable[[], JobsClient],
        functions: Iterable[Any] = (),
        startup: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        shutdown: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        **worker_options: Any,
    ) -> dict[str, Any]:
        """The settings of a SAQ worker that runs the waits: `saq.Worker(**settings)`, or a
        module-level `settings = waits.worker_settings(...)` for the `saq` command.

        Args:
            client: makes the worker's `JobsClient` (at its startup, in its event loop; closed
                at its shutdown).
            functions: your own SAQ functions, the `on_outcome` one among them.
            startup, shutdown: your own hooks, run after the client's opening and before its
                closing.
            worker_options: any other `saq.Worker` option (`concurrency`, `timers`, ...).
        """

        return {
            "queue": LinkQueue(
                PatientQueue(self.queue, Outage(self.queue.name, self._guard.told)),
                self.queue,
                {POLL_FUNCTION: self._begin, **self._outcomes.starts()},
            ),
            "functions": [(POLL_FUNCTION, self.poll), *self._outcomes.wrap(functions)],
            "startup": functools.partial(self._open, client=client, startup=startup),
            "shutdown": functools.partial(self._close, shutdown=shutdown),
            **worker_options,
        }

    async def _open(
        self,
        ctx: dict[str, Any],
        *,
        client: Callable[[], JobsClient],
        startup: Callable[[dict[str, Any]], Awaitable[None]] | None,
    ) -> None:
        """A worker's startup: Redis checked, the client made, the upkeep started."""
        with self._guard.mapped():  # a Redis that would lose the waits runs none
            await self._guard.ready()
        made = client()
        if not isinstance(made, JobsClient):
            raise TypeError(f"client() must make a JobsClient, got {type(made).__name__}")
        self._client = made
        self._outcomes.redactor = redactor_of(made)
        self._outcomes.start(threads=ctx["worker"].concurrency)  # a call per slot at most
        logging.getLogger("saq").addFilter(self._saq_lines)
        await self._rescue.renew()  # before any link begins
        mending = mend_forever(self._links, self._guard, self.mend, self.mend_interval)
        self._upkeep = [asyncio.create_task(mending), asyncio.create_task(self._rescue.forever())]
        if startup is not None:
            await startup(ctx)

    async def _close(
        self, ctx: dict[str, Any], *, shutdown: Callable[[dict[str, Any]], Awaitable[None]] | None
    ) -> None:
        """A worker's shutdown: the user's hook, then all it started closed, even if cancelled."""
        try:
            if shutdown is not None:
                await shutdown(ctx)
        finally:
            tasks = [*self._outcomes.close(), *self._upkeep]
            self._upkeep = []
            try:
                await stop(tasks)
            finally:
                if self._client is not None:
                    await self._client.aclose()
                    self._client = None
                logging.getLogger("saq").removeFilter(self._saq_lines)

    async def mend(self) -> int:
        """Enqueue again each wait's link that SAQ lost (missing from its queue since the last
        call), and delete the kept checkpoints of waits no longer live; how many waits were
        enqueued again. Workers call it every `mend_interval` seconds."""
        with self._guard.mapped():
            return await self._mending.mend()

    async def poll(
        self, ctx: dict[str, Any], *, job_id: str, step: int, kept: int = 0, **earlier: Any
    ) -> str | Ended:
        """One link of a wait (SAQ calls it): one poll, from the state the wait's records keep
        (`Links.begin`; `kept`: 1, a link of this version; a link of an earlier version carries
        its state in its arguments, `earlier`: its checkpoint, `saved` or `checkpoint`, and its
        `timeout` and `due`), then the hand-over to the next link or to the outcome, within
        `poll_timeout` from its begin. Returns what it did: "polled", "over", "paused" (no turn
        under the fleet's rate within `HORIZON`: handed over unpolled, to its place in the
        line), "held" (an error of this worker's setup: handed over unpolled, logged) or
        "superseded" (a second run of a link already handed over); the first four as `Ended`,
        on a worker whose queue leaves SAQ's records of a link's start and end to its scripts
        (`_saq_books`)."""
        started = booked(ctx)
        link = self._link(job_id, step, None if started is None else started.job)
        # From the begin on (the rescue hands a link on `poll_timeout` and a lease after it),
        # not from here: a slow `before_process` hook of the worker's comes in between.
        loop = asyncio.get_running_loop()
        deadline = (loop.time() if started is None else started.at) + self._links.poll_timeout
        if loop.time() >= deadline:
            # Cut short before anything: the timeout would cut at the link's first await that
            # waits, which on a connection kept open comes only once its poll was sent.
            raise TimeoutError
        async with asyncio.timeout_at(deadline):
            if started is None:
                return await link.run(None if kept else earlier)
            return await link.go_on(started.found, None if kept else earlier)

    def _link(self, job_id: str, step: int, job: SaqJob | None) -> Link:
        """Link `step` of the wait on `job_id`, run as SAQ `job` (None: no SAQ record of it
        written, `Link.job`)."""
        client = self._client
        if client is None:
            raise RuntimeError("the worker was not started with SaqWaits.worker_settings")
        policy, token, rate = self._fleet_policy, self._rescue.token, self._rate
        return Link(self._links, self._outcomes, policy, client, rate, job_id, step, token, job)

    async def _begin(self, job: SaqJob) -> Any:
        """A link's begin as SAQ's worker starts its job (`LinkQueue`), within
        `poll_timeout`."""
        kwargs = job.kwargs or {}
        link = self._link(kwargs["job_id"], kwargs["step"], job)
        async with asyncio.timeout(self._links.poll_timeout):
            return await link.begin()

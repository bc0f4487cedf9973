"""`SaqWaits`: waits that outlive their process, as chains of SAQ jobs on Redis.

Each link (`Link`) makes one poll by the rules (`_rules`), at its turn under the rate every
worker of the queue shares (`_saq_rate`), then hands the wait's checkpoint to the next link,
due when the next poll is, or its outcome (`_saq_links` keeps the records).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import Any
from uuid import UUID

import attrs
from saq import Queue
from saq.queue.redis import RedisQueue

from jobpoll._checkpoint import job_checkpoint, resume_job
from jobpoll._client import JobsClient, redactor_of
from jobpoll._config import check_positive
from jobpoll._errors import JobFailedError, JobPollError
from jobpoll._gate import accepted, refused_by
from jobpoll._ids import check_job_id
from jobpoll._models import JobResult
from jobpoll._policy import PollPolicy
from jobpoll._rules import Rules, check_timeout
from jobpoll._saq_links import POLL_FUNCTION, Links, result_to_json
from jobpoll._saq_logs import SaqLines, wait_ended, wait_started
from jobpoll._saq_outage import Outage, PatientQueue
from jobpoll._saq_outcomes import Outcomes, Undelivered
from jobpoll._saq_overview import QueueOverview, read_overview
from jobpoll._saq_rate import HORIZON, FleetRate
from jobpoll._saq_redis import DURABILITIES, Durability, RedisGuard, outage_of
from jobpoll._state import JobState
from jobpoll._tasks import stop

logger = logging.getLogger("jobpoll")


class SaqWaits:
    """Waits on CDQ jobs that live in a SAQ queue on Redis, shared by any number of workers.

        waits = SaqWaits(Queue.from_url("redis://localhost"), on_outcome="job_ended")
        await waits.submit(job_ids, timeout=3600)       # from any process
        result = await waits.result(job_id)             # from any process
        settings = waits.worker_settings(client=make_client, functions=[job_ended])

    Build it alike in every process (same queue name, same `on_outcome`): they share only
    Redis. The README's "Scale out" section tells how a wait moves.

    Args:
        queue: a SAQ queue on Redis (`saq.Queue.from_url("redis://...")`, a `RedisQueue`).
        on_outcome: the name of a SAQ function of your workers that each outcome is enqueued
            to, once per job id, as `on_outcome(ctx, *, result: dict)` (read it with
            `load_result(result)`); None: outcomes are only kept for `result()`.
        policy: each wait's schedule and rules for errors (`PollPolicy()` when None), with the
            real `clock` and `sleep`: a wait moves between processes.
        poll_timeout: seconds a link may run (SAQ's job `timeout`), after which SAQ's sweep
            gives a dead worker's link to another; keep it above the client's request timeout
            plus a second (a poll may wait that long for its turn under the fleet's rate).
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
            Redis does not let be read is as you declare (README: "What Redis must keep").

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
        self._mend_task: asyncio.Task[None] | None = None
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
        with self._guard.mapped():
            since = await self._guard.since()
            async with self._links.redis.pubsub() as pubsub:
                await pubsub.subscribe(self._links.channel)
                # At first, and now and then: all of them (a message may have been missed),
                # and whether Redis still has the waits.
                looking_at: list[str] | None = None
                while pending:
                    if looking_at is None:
                        records = {job_id: self._links.wait_key(job_id) for job_id in pending}
                        since = await self._guard.gone(since, records)
                        looking_at = sorted(pending)
                    ended, held = await self._links.stored(looking_at)
                    for job_id, result in ended.items():
                        pending.discard(job_id)
                        yield result
                    if held is not None:
                        raise held
                    if not pending:
                        break
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
                    if message is None:
                        looking_at = None
                    else:
                        data = message["data"]
                        job_id = data.decode() if isinstance(data, bytes) else str(data)
                        looking_at = [job_id] if job_id in pending else []

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

        async def open_client(ctx: dict[str, Any]) -> None:
            with self._guard.mapped():  # a Redis that would lose the waits runs none
                await self._guard.ready()
            made = client()
            if not isinstance(made, JobsClient):
                raise TypeError(f"client() must make a JobsClient, got {type(made).__name__}")
            self._client = made
            self._outcomes.redactor = redactor_of(made)
            self._outcomes.start(threads=ctx["worker"].concurrency)  # a call per slot at most
            logging.getLogger("saq").addFilter(self._saq_lines)
            self._mend_task = asyncio.create_task(self._mend_forever())
            if startup is not None:
                await startup(ctx)

        async def close_client(ctx: dict[str, Any]) -> None:
            try:
                if shutdown is not None:
                    await shutdown(ctx)
            finally:
                mending, self._mend_task = self._mend_task, None
                tasks = [*self._outcomes.close(), *([] if mending is None else [mending])]
                try:  # a cancellation of this shutdown is raised once all is closed
                    await stop(tasks)
                finally:
                    if self._client is not None:
                        await self._client.aclose()
                        self._client = None
                    logging.getLogger("saq").removeFilter(self._saq_lines)

        return {
            "queue": PatientQueue(self.queue, Outage(self.queue.name, self._guard.told)),
            "functions": [(POLL_FUNCTION, self.poll), *self._outcomes.wrap(functions)],
            "startup": open_client,
            "shutdown": close_client,
            **worker_options,
        }

    async def _mend_forever(self) -> None:
        """One worker at a time (a lock in Redis) mends the queue; each looks whether Redis
        lost the queue's data (logged at ERROR once)."""
        lock = self._links.prefix + "mending"
        while True:
            await asyncio.sleep(self.mend_interval * (0.8 + 0.4 * random.random()))
            try:
                await self._guard.current_epoch()
                held = await self._links.redis.set(
                    lock, "1", nx=True, px=int(self.mend_interval * 800)
                )
                if held:
                    await self.mend()
            except Exception as exc:
                if not outage_of(exc.__cause__ or exc):  # Redis away: logged as an outage
                    logger.exception("mending the queue's waits failed")

    async def mend(self) -> int:
        """Enqueue again each wait's link that SAQ lost (missing from its queue since the last
        call); how many. Workers call it every `mend_interval` seconds."""
        with self._guard.mapped():
            return await self._links.mend()

    async def poll(
        self,
        ctx: dict[str, Any],
        *,
        job_id: str,
        step: int,
        checkpoint: dict[str, Any] | None,
        timeout: float | None = None,  # noqa: ASYNC109 - the wait's deadline
    ) -> str:
        """One link of a wait (SAQ calls it): one poll, then the hand-over to the next link or
        to the outcome. Returns what it did: "polled", "over", "paused" (no turn under the
        fleet's rate within `HORIZON`: handed over unpolled, to its place in the line), "held"
        (an error of this worker's setup: handed over unpolled, logged) or "superseded" (a
        second run of a link already handed over)."""
        client = self._client
        if client is None:
            raise RuntimeError("the worker was not started with SaqWaits.worker_settings")
        longest = max(HORIZON, self.policy.max_interval)
        turn = await self._links.begin(job_id, step, self._rate, longest)
        while turn is not None and turn.taken and turn.delay > 0:
            await self.policy.sleep(turn.delay)
            if self._rate.control.cuts == turn.sent_in:
                break
            # The fleet's rate was cut while this poll slept (this worker's other links saw
            # it): a turn taken at the old rate would be refused too, so take one anew.
            turn = await self._links.begin(job_id, step, self._rate, longest)
        if turn is None:
            return "superseded"
        if step == 0:
            wait_started(job_id)
        if not turn.taken:  # run a little before its place, for SAQ's scheduling to be late
            due = time.time() + max(0.0, turn.delay - HORIZON)
            await self._links.hand_over(job_id, step, checkpoint, due, timeout)
            return "paused"
        link = Link(self._links, self._outcomes, self.policy, client, self._rate, job_id, step)
        return await link.poll(checkpoint, timeout, turn.sent_in)


@attrs.frozen
class Link:
    """Link `step` of the wait on `job_id`, polled by a worker with its `client`."""

    links: Links
    outcomes: Outcomes
    policy: PollPolicy
    client: JobsClient
    rate: FleetRate
    job_id: str
    step: int

    async def poll(
        self,
        checkpoint: dict[str, Any] | None,
        timeout: float | None,  # noqa: ASYNC109 - the wait's deadline
        sent_in: int,
    ) -> str:
        """The poll, sent in cut `sent_in` of the fleet's rate, and what follows it."""
        job_id, clock = self.job_id, self.policy.clock
        state = JobState(job_id=job_id)
        delay: float | None
        answered: float | None = None  # when the poll was accepted, on Redis's clock
        try:
            if checkpoint is None:
                state.job_id = check_job_id(job_id)
                check_timeout(timeout)
                rules = Rules(self.policy, timeout)
            else:
                rules, state, _owed = resume_job(checkpoint, job_id, self.policy)
            rules.begin(state, clock())
            request_timeout = rules.send(state, clock())
            try:
                job = await self.client.get_job(job_id, timeout=request_timeout, paced=False)
            except JobPollError as exc:
                answered = self.rate.now() if accepted(exc) else None
                if exc.stops_all:
                    return await self._held(exc, checkpoint, timeout, answered)
                if exc.throttles:
                    await self._refused(exc, sent_in)
                now = clock()
                delay = rules.failed(state, exc, now)
            else:
                answered = self.rate.accepted()
                now = clock()
                _news, delay = rules.answered(state, job, now)
                if delay is None:
                    error = JobFailedError(job) if job.failed else None
                    return await self._over(JobResult(job_id, job, error), state, answered)
        except JobPollError as exc:  # the wait's own end (a CheckpointError too: no restart)
            return await self._over(JobResult(job_id, state.job, exc), state, answered)
        state.next_poll_at = now + delay
        if rules.deadline is not None:  # the next link times out, not polls, once past it
            delay = min(delay, rules.deadline - now)
        saved = job_checkpoint(rules, state)
        due = time.time() + delay
        await self.links.hand_over(job_id, self.step, saved, due, answered_at=answered)
        return "polled"

    async def _over(self, result: JobResult, state: JobState, answered: float | None) -> str:
        data = result_to_json(result, polls=state.polls)
        outcome = self.outcomes.job(data)
        if await self.links.deliver(data, outcome, self.step, answered_at=answered):
            took = self.policy.clock() - state.started_at if state.polls else 0.0
            wait_ended(result, state.polls, took)
        return "over"

    async def _held(
        self,
        error: JobPollError,
        checkpoint: dict[str, Any] | None,
        timeout: float | None,  # noqa: ASYNC109 - the wait's deadline
        answered: float | None,
    ) -> str:
        """Not polled: this worker's setup is at fault. The error is kept for the submitter,
        and the wait handed over as it was, to be tried again later."""
        logger.error("job %s: not polled, this worker cannot poll: %s", self.job_id, error)
        await self.links.held(self.job_id, self.step, error)
        retry_at = time.time() + self.policy.max_interval
        await self.links.hand_over(
            self.job_id, self.step, checkpoint, retry_at, timeout, answered_at=answered
        )
        return "held"

    async def _refused(self, error: JobPollError, sent_in: int) -> None:
        """The service refused the poll: cut the fleet's rate, unless another worker did since
        the poll was sent (the mirror is read afresh to know)."""
        rate = self.rate
        if sent_in == rate.control.cuts:
            await self.links.read_rate(rate)
        cut = rate.refused(error, sent_in)
        if cut is not None and await self.links.cut_rate(cut):
            logger.info(
                "%s; every worker's polls are held to %.3g a second",
                refused_by(error),
                cut.state.rate,
            )

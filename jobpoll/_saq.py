"""Waits that outlive their process: jobpoll on SAQ (an asyncio job queue on Redis).

A wait is a chain of queue jobs. Each link makes ONE poll, then hands the wait's checkpoint to
the next link, scheduled for the moment the next poll is due; no worker sleeps through a wait,
so one worker process serves many thousands of waits, and a worker killed mid-way loses only
the poll it was making (SAQ's sweep runs that link again on another worker).

What Redis holds, besides SAQ's own queue (all keys under `jobpoll:<queue name>:`):

- `wait:<job id>`, a small hash: `step`, the number of the link that is live, while the job is
  waited for (and `timeout`, the wait's, if it has one; `held`, the error of a worker's setup
  met at its last poll, for `results()` to raise); `result`, the outcome as JSON, once it is
  over, and `delivered` once the outcome function returned (kept `outcome_ttl` seconds).
  The hand-over from one link to the next, and from the last link to the outcome, is one Lua
  script that checks `step` and enqueues the next SAQ job in the same atomic step: a link run
  twice (a sweep after a kill, a worker stuck past its timeout) finds `step` moved on and does
  nothing, so a job id has one chain at a time and one outcome, however often it is submitted.
- `pause`, a hash shared by every worker: `until` (epoch seconds), `gen` (pauses begun) and
  `streak` (throttled answers in a row): the fleet's pause after a 429 or 503, as in
  `wait_for_jobs`.
- `delivered`, a counter of outcomes handed to the user's function.
- `suspects` and `mending`: the mending of waits whose next link SAQ lost (see `mend`).

Each link carries the wait's checkpoint (`JobWait.checkpoint()`) in its SAQ kwargs and resumes
it with `wait_for_job(..., resume=checkpoint)`: the schedule goes on across links and workers
as in one process. The scripts write SAQ's own records the way `RedisQueue.enqueue` does (the
job's JSON, its entry in the `incomplete` sorted set, and in the `queued` list when due now);
the version range of SAQ in the `saq` extra is the one they are tested with.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from saq import Job as SaqJob
from saq import Queue
from saq.job import Status
from saq.queue.redis import RedisQueue

from jobpoll._client import JobsClient
from jobpoll._errors import (
    JobFailedError,
    JobPollError,
)
from jobpoll._ids import check_job_id
from jobpoll._models import JobResult
from jobpoll._policy import PollPolicy
from jobpoll._wait import JobWait, check_timeout, wait_for_job

__all__ = ["POLL_FUNCTION", "SaqWaits", "load_result", "result_to_json"]

logger = logging.getLogger("jobpoll")

#: The name the poll step is registered under in a SAQ worker.
POLL_FUNCTION = "jobpoll.poll"

#: Seconds a link's SAQ record is kept once it ran. Not 0 (deleted at once): SAQ's sweep may
#: take a link for stuck just as a worker picks it up (its status not yet "active"), have the
#: worker abort it, and wait for its record to end before it retries it; with no record left it
#: would give up, and a link aborted before its hand-over would end its chain. Kept a while,
#: the link is retried, and a retry of a link already handed over does nothing.
_LINK_TTL = 10

# Each script checks the wait's record and writes SAQ's job in the same atomic step.
# KEYS: the wait's record, the SAQ job's key, SAQ's `incomplete` set, SAQ's `queued` list.
# An empty job (ARGV[1]) enqueues nothing: an outcome kept for `result()` only.
_ENQUEUE_SAQ_JOB = """
if ARGV[1] ~= '' then
  redis.call('SET', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[2], KEYS[2])
  if ARGV[2] == '0' then redis.call('RPUSH', KEYS[4], KEYS[2]) end
end
"""

# ARGV: the first link's SAQ job, its score (0: due now), the wait's timeout ('' for none).
_SUBMIT = (
    """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'step', 0)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'timeout', ARGV[3]) end
"""
    + _ENQUEUE_SAQ_JOB
    + "return 1"
)

# ARGV: the next link's SAQ job, its score, the live step, the next step.
_ADVANCE = (
    """
if redis.call('HGET', KEYS[1], 'step') ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'step', ARGV[4])
"""
    + _ENQUEUE_SAQ_JOB
    + "return 1"
)

# ARGV: the outcome's SAQ job, '0', the live step, the result's JSON, its TTL in seconds.
# KEYS[5]: the counter of outcomes delivered. KEYS[6]: the channel outcomes are announced on.
_FINISH = (
    """
if redis.call('HGET', KEYS[1], 'step') ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], 'step')
redis.call('HSET', KEYS[1], 'result', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('INCR', KEYS[5])
"""
    + _ENQUEUE_SAQ_JOB
    + """
redis.call('PUBLISH', KEYS[6], ARGV[6])
return 1
"""
)

# ARGV: the link's SAQ job, '0', the live step. Enqueues the live link again, if it is still
# live and still missing from SAQ's `incomplete` set.
_MEND = (
    """
if redis.call('HGET', KEYS[1], 'step') ~= ARGV[3] then return 0 end
if redis.call('ZSCORE', KEYS[3], KEYS[2]) then return 0 end
"""
    + _ENQUEUE_SAQ_JOB
    + "return 1"
)

# KEYS: the wait's record, the fleet's pause. ARGV: the step. Whether that step is live, and
# the pause's fields.
_BEGIN = """
local live = redis.call('HGET', KEYS[1], 'step') == ARGV[1] and 1 or 0
local pause = redis.call('HMGET', KEYS[2], 'until', 'gen', 'streak')
return {live, pause[1] or '0', pause[2] or '0', pause[3] or '0'}
"""

# KEYS: the fleet's pause. ARGV: the generation the poll was sent in, until (epoch seconds).
# Only a poll sent since the last pause began starts a new one: the rest of a storm's answers
# were sent before it, and say nothing new.
_THROTTLE = """
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
if gen ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'until', ARGV[2], 'gen', gen + 1)
redis.call('HINCRBY', KEYS[1], 'streak', 1)
return 1
"""

# KEYS: the wait's record, the channel outcomes are announced on. ARGV: the live step, the
# setup error met (a result's JSON, with that step), the job id. Kept in the record and
# announced as an outcome is, so that `results()` raises it at once.
_HOLD = """
if redis.call('HGET', KEYS[1], 'step') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'held', ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
"""

# KEYS: the wait's record. Once the outcome function returned; nothing if the record expired.
_DELIVERED = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'delivered', 1) end
"""

# KEYS: the fleet's pause. ARGV: the generation the answered poll was sent in.
_CALM = """
if redis.call('HGET', KEYS[1], 'gen') == ARGV[1] then redis.call('HSET', KEYS[1], 'streak', 0) end
"""


def _epoch(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp()


# --- results as JSON ----------------------------------------------------------------------------


def result_to_json(result: JobResult, *, polls: int | None = None) -> dict[str, Any]:
    """A `JobResult` as the JSON object the outcome function is enqueued with: what
    `JobResult.to_dict()` writes (`jobId`, `job` in the service's JSON, `error` as its `type`,
    `message` and `attributes`), plus `ok` and the number of `polls` the wait made."""
    return {**result.to_dict(), "ok": result.ok, "polls": polls}


def load_result(data: dict[str, Any]) -> JobResult:
    """The `JobResult` an outcome function was enqueued with (see `result_to_json`); its
    `error` is an instance of the same class, with the same message and attributes."""
    return JobResult.from_dict({key: data[key] for key in ("jobId", "job", "error")})


# --- the queue --------------------------------------------------------------------------------


async def _batches(keys: AsyncIterator[Any], size: int) -> AsyncIterator[list[Any]]:
    batch: list[Any] = []
    async for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class SaqWaits:
    """Waits on CDQ jobs that live in a SAQ queue on Redis, shared by any number of workers.

        waits = SaqWaits(Queue.from_url("redis://localhost"), on_outcome="job_ended")
        await waits.submit(job_ids, timeout=3600)       # from any process
        result = await waits.result(job_id)             # from any process
        settings = waits.worker_settings(client=make_client, functions=[job_ended])

    Build it alike in every process (same queue name, same `on_outcome`): submitters, awaiters
    and workers share nothing but Redis.

    Args:
        queue: a SAQ queue on Redis (`saq.Queue.from_url("redis://...")`, a `RedisQueue`).
        on_outcome: the name of a SAQ function (registered in your workers) that each outcome
            is enqueued to, once per job id, as `on_outcome(ctx, *, result: dict)`; read it with
            `load_result(result)`. None: outcomes are only kept for `result()`.
        policy: the schedule and the rules for errors of each wait; `PollPolicy()` when None.
            Its `clock` and `sleep` must be the real ones: a wait moves between processes.
        poll_timeout: seconds a link may run (SAQ's job `timeout`); a link of a dead worker is
            run again by another once this has passed (and SAQ's sweep came by). Keep it above
            the client's request timeout.
        outcome_ttl: seconds an outcome is kept for `result()` after the job ended; for as
            long, submitting the id again does nothing.
        outcome_retries: SAQ's `retries` for the outcome function's job.
        outcome_timeout: SAQ's `timeout` for the outcome function's job.
        mend_interval: how often (seconds) one of the workers looks for waits whose next
            link is missing from the queue (SAQ's sweep lost it: its worker was killed between
            taking the link out of the queue and putting it back) and enqueues it again. A
            wait is mended once it was seen so twice in a row.
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
            check_timeout(value)
            if value < 1:
                raise ValueError(f"{name} must be at least 1 second, got {value!r}")
        self.queue: RedisQueue = queue
        self.on_outcome = on_outcome
        self.policy = policy or PollPolicy()
        self.poll_timeout = poll_timeout
        self.outcome_ttl = outcome_ttl
        self.outcome_retries = outcome_retries
        self.outcome_timeout = outcome_timeout
        self.mend_interval = mend_interval
        self._prefix = f"jobpoll:{queue.name}:"
        self._pause_key = self._prefix + "pause"
        self._delivered_key = self._prefix + "delivered"
        self._channel = self._prefix + "over"
        redis = queue.redis
        self._redis = redis
        self._submit = redis.register_script(_SUBMIT)
        self._advance = redis.register_script(_ADVANCE)
        self._finish = redis.register_script(_FINISH)
        self._begin = redis.register_script(_BEGIN)
        self._throttle = redis.register_script(_THROTTLE)
        self._calm = redis.register_script(_CALM)
        self._mark_delivered = redis.register_script(_DELIVERED)
        self._hold = redis.register_script(_HOLD)
        self._mend_script = redis.register_script(_MEND)
        self._mend_task: asyncio.Task[None] | None = None
        self._client: JobsClient | None = None

    def __repr__(self) -> str:
        return f"<SaqWaits queue={self.queue.name!r} on_outcome={self.on_outcome!r}>"

    # -- keys

    def _wait_key(self, job_id: str) -> str:
        return f"{self._prefix}wait:{job_id}"

    def _saq_keys(self, job_key: str) -> list[str]:
        queue = self.queue
        return [queue.job_id(job_key), queue.namespace("incomplete"), queue.namespace("queued")]

    def _saq_job(
        self,
        function: str,
        key: str,
        kwargs: dict[str, Any],
        *,
        due: float = 0.0,
        timeout: float,
        retries: int,
        ttl: int,
        meta: dict[str, Any] | None = None,
        progress: float = 0.0,
    ) -> tuple[SaqJob, int]:
        """A SAQ job as `RedisQueue.enqueue` would store it, and its score (0: due now)."""
        scheduled = 0 if due <= time.time() else math.ceil(due)
        job = SaqJob(
            function=function,
            kwargs=kwargs,
            queue=self.queue,
            key=key,
            timeout=math.ceil(timeout),
            retries=retries,
            ttl=ttl,
            retry_delay=1.0,
            retry_backoff=60.0,
            scheduled=scheduled,
            meta=meta or {},
            progress=progress,
        )
        job.queued = int(time.time() * 1000)
        job.status = Status.QUEUED
        return job, scheduled

    def _link(
        self, job_id: str, step: int, checkpoint: dict[str, Any] | None, due: float, **first: Any
    ) -> tuple[SaqJob, int]:
        meta: dict[str, Any] = {"job_id": job_id, "step": step}
        progress = 0.0
        if checkpoint is not None:
            job = checkpoint.get("job")
            if job is not None:
                meta["status"] = job.get("status")
                meta["progress"] = job.get("progress")
                progress = (job.get("progress") or 0) / 100
            meta["polls"] = checkpoint.get("polls")
            meta["next_poll_at"] = checkpoint.get("next_poll_at")
        return self._saq_job(
            POLL_FUNCTION,
            f"jobpoll:{job_id}:{step}",
            {"job_id": job_id, "step": step, "checkpoint": checkpoint, **first},
            due=due,
            timeout=self.poll_timeout,
            # A link is retried by SAQ when its worker dies or Redis fails under it; a
            # link that finds itself superseded does nothing, so retries are harmless.
            retries=1000,
            ttl=_LINK_TTL,
            meta=meta,
            progress=progress,
        )

    # -- submitting and awaiting, from any process

    async def submit(
        self,
        job_ids: Iterable[str | UUID],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the waits' deadline, not this call's
    ) -> list[bool]:
        """Start waiting on jobs, in the workers; returns, per id, whether a wait started.

        An id already waited for, or whose outcome is still kept (`outcome_ttl`), starts
        nothing (False): one job id has one chain of polls at a time, whoever submits it.

        Args:
            job_ids: the jobs (`str` or `UUID`); each is checked before anything is sent.
            timeout: the most seconds each wait may take, from its first poll; None: until
                the job ends.

        Raises:
            InvalidJobId: an id could never be sent (nothing is submitted then).
        """
        if isinstance(job_ids, str | bytes | UUID):
            raise TypeError("job_ids must be an iterable of job ids (for one, a list of one)")
        check_timeout(timeout)
        ids = [check_job_id(job_id) for job_id in job_ids]
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                saq_job, score = self._link(job_id, 0, None, 0.0, timeout=timeout)
                await self._submit(
                    keys=[self._wait_key(job_id), *self._saq_keys(saq_job.key)],
                    args=[self.queue.serialize(saq_job), score, "" if timeout is None else timeout],
                    client=pipe,
                )
            started = await pipe.execute()
        return [bool(flag) for flag in started]

    async def results(self, job_ids: Iterable[str | UUID]) -> AsyncGenerator[JobResult, None]:
        """The outcome of each job, as each is over (from any process, submitted or not yet).

        Waits as long as it takes: bound it with `asyncio.timeout(...)`.

        Raises:
            JobPollError: an error of a worker's setup (`JobPollError.stops_all`: a refused
                key, a service never reached) met at the last poll of one of these jobs that
                are not over, once every outcome already kept was yielded. As in
                `wait_for_jobs`, it stops the awaiting, not the waits: the worker logged it
                and holds the wait, unpolled, trying again every `max_interval`; once a worker
                polls it, the error is no longer raised, and awaiting again gets the outcome.
        """
        pending = {check_job_id(job_id) for job_id in job_ids}
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self._channel)
            # At first, and now and then: all of them (a message may have been missed).
            looking_at = sorted(pending)
            while pending:
                ended, held = await self._stored(looking_at)
                for job_id, result in ended.items():
                    pending.discard(job_id)
                    yield result
                if held is not None:
                    raise held
                if not pending:
                    break
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
                if message is None:
                    looking_at = sorted(pending)
                else:
                    data = message["data"]
                    job_id = data.decode() if isinstance(data, bytes) else str(data)
                    looking_at = [job_id] if job_id in pending else []
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def result(self, job_id: str | UUID) -> JobResult:
        """The outcome of one job, once it is over (from any process); bound the wait with
        `asyncio.timeout(...)`.

        Raises:
            JobPollError: the error of a worker's setup met at the job's last poll, as
                `results()` raises it.
        """
        results = self.results([job_id])
        try:
            return await anext(results)
        finally:
            await results.aclose()

    async def _stored(self, job_ids: list[str]) -> tuple[dict[str, JobResult], JobPollError | None]:
        """The kept outcomes of `job_ids`, and a setup error met at the last poll of one of the
        others: one kept at a step not followed by a poll since (the step after it is live)."""
        if not job_ids:
            return {}, None
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(self._wait_key(job_id), ["result", "step", "held"])
            values = await pipe.execute()
        ended: dict[str, JobResult] = {}
        held: JobPollError | None = None
        for job_id, (result, step, held_json) in zip(job_ids, values, strict=True):
            if result is not None:
                ended[job_id] = load_result(json.loads(result))
            elif held_json is not None and step is not None:
                data = json.loads(held_json)
                if int(step) <= data["step"] + 1:
                    held = load_result(data).error
                    assert held is not None
                    held.add_note(f"met by a worker polling job {job_id}; its wait goes on")
        return ended, held

    async def delivered(self) -> int:
        """How many outcomes have been handed to `on_outcome` (or stored) so far, in all."""
        value = await self._redis.get(self._delivered_key)
        return int(value or 0)

    # -- the workers

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
            client: makes the worker's `JobsClient` (called once, at the worker's startup, in
                its event loop; closed at its shutdown).
            functions: your own SAQ functions, the `on_outcome` one among them.
            startup, shutdown: your own hooks, run after (startup) and before (shutdown) the
                client's opening and closing.
            worker_options: any other `saq.Worker` option (`concurrency`, `timers`, ...).
        """

        async def open_client(ctx: dict[str, Any]) -> None:
            made = client()
            if not isinstance(made, JobsClient):
                raise TypeError(f"client() must make a JobsClient, got {type(made).__name__}")
            self._client = made
            self._mend_task = asyncio.create_task(self._mend_forever())
            if startup is not None:
                await startup(ctx)

        async def close_client(ctx: dict[str, Any]) -> None:
            try:
                if shutdown is not None:
                    await shutdown(ctx)
            finally:
                task, self._mend_task = self._mend_task, None
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if self._client is not None:
                    await self._client.aclose()
                    self._client = None

        return {
            "queue": self.queue,
            "functions": [(POLL_FUNCTION, self.poll), *self._wrap_outcome(functions)],
            "startup": open_client,
            "shutdown": close_client,
            **worker_options,
        }

    async def _mend_forever(self) -> None:
        """Now and then (one worker at a time), enqueue again the links SAQ lost."""
        lock = self._prefix + "mending"
        while True:
            await asyncio.sleep(self.mend_interval * (0.8 + 0.4 * random.random()))
            try:
                held = await self._redis.set(lock, "1", nx=True, px=int(self.mend_interval * 800))
                if held:
                    await self.mend()
            except Exception:  # Redis away: the next round tries again
                logger.exception("mending the queue's waits failed")

    async def mend(self) -> int:
        """Enqueue again each wait's live link that has been missing from SAQ's queue since the
        last call (what a sweep cut short by a kill leaves); returns how many.

        Workers call it every `mend_interval` seconds; call it yourself after an incident.
        """
        redis, queue = self._redis, self.queue
        suspects_key = self._prefix + "suspects"
        before = {
            key.decode(): value.decode()
            for key, value in (await redis.hgetall(suspects_key)).items()  # type: ignore[misc]
        }
        incomplete = queue.namespace("incomplete")
        prefix = self._prefix + "wait:"
        suspects: dict[str, str] = {}
        mended = 0
        async for batch in _batches(redis.scan_iter(match=prefix + "*", count=1000), 500):
            job_ids = [key.decode().removeprefix(prefix) for key in batch]
            async with redis.pipeline(transaction=False) as pipe:
                for key in batch:
                    pipe.hget(key, "step")
                steps = await pipe.execute()
            live = [
                (job_id, step.decode()) for job_id, step in zip(job_ids, steps, strict=True) if step
            ]
            async with redis.pipeline(transaction=False) as pipe:
                for job_id, step in live:
                    pipe.zscore(incomplete, queue.job_id(f"jobpoll:{job_id}:{step}"))
                scores = await pipe.execute()
            for (job_id, step), score in zip(live, scores, strict=True):
                if score is not None:
                    continue
                if before.get(job_id) == step:
                    mended += await self._mend_one(job_id, int(step))
                else:
                    suspects[job_id] = step
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete(suspects_key)
            if suspects:
                pipe.hset(suspects_key, mapping=suspects)
            await pipe.execute()
        return mended

    async def _mend_one(self, job_id: str, step: int) -> int:
        link_key = f"jobpoll:{job_id}:{step}"
        stored = self.queue.deserialize(await self._redis.get(self.queue.job_id(link_key)))
        if stored is not None and stored.kwargs:
            checkpoint = stored.kwargs.get("checkpoint")
            timeout = stored.kwargs.get("timeout")
        else:  # its record is gone too: the wait starts over, with its timeout
            checkpoint = None
            raw = self._redis.hget(self._wait_key(job_id), "timeout")
            value = await cast("Awaitable[bytes | None]", raw)
            timeout = None if value is None else float(value)
        first = {"timeout": timeout} if checkpoint is None else {}
        saq_job, _ = self._link(job_id, step, checkpoint, 0.0, **first)
        done = await self._mend_script(
            keys=[self._wait_key(job_id), *self._saq_keys(link_key)],
            args=[self.queue.serialize(saq_job), 0, step],
        )
        if done:
            logger.warning(
                "job %s: its next poll was lost from the queue; enqueued it again%s",
                job_id,
                "" if checkpoint is not None else " (from the start: its checkpoint was lost too)",
            )
        return int(done)

    def _wrap_outcome(self, functions: Iterable[Any]) -> list[Any]:
        """The user's functions, the outcome one wrapped so that a call that returned is not
        made again for the same job (SAQ may run a job again: see `SaqWaits`)."""
        wrapped: list[Any] = []
        found = self.on_outcome is None
        for entry in functions:
            name, function = entry if isinstance(entry, tuple) else (entry.__qualname__, entry)
            if name == self.on_outcome:
                found = True
                wrapped.append((name, self._once(function)))
            else:
                wrapped.append(entry)
        if not found:
            raise ValueError(
                f"on_outcome {self.on_outcome!r} is not among the worker's functions: every"
                " worker of the queue may be handed an outcome, so each must have it"
            )
        return wrapped

    def _once(self, function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        async def deliver_once(ctx: dict[str, Any], *, result: dict[str, Any]) -> Any:
            wait_key = self._wait_key(str(result["jobId"]))
            delivered = self._redis.hget(wait_key, "delivered")
            if await cast("Awaitable[bytes | None]", delivered) is not None:
                logger.info("job %s: outcome already delivered, not again", result["jobId"])
                return None
            value = function(ctx, result=result)
            if inspect.isawaitable(value):
                value = await value
            await self._mark_delivered(keys=[wait_key])
            return value

        return deliver_once

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
        to the outcome. Returns what it did: "polled", "over", "paused" (the fleet's pause
        holds: handed over unpolled), "held" (an error of this worker's setup: handed over
        unpolled, logged) or "superseded" (a second run of a link already handed over)."""
        client = self._client
        if client is None:
            raise RuntimeError("the worker was not started with SaqWaits.worker_settings")
        wait_key = self._wait_key(job_id)
        live, until, gen, streak = await self._begin(keys=[wait_key, self._pause_key], args=[step])
        if not live:
            return "superseded"
        until, gen, streak = float(until), int(gen), int(streak)
        policy = self.policy
        now = time.time()
        if until > now:
            # Resume in a trickle rather than all at once: the first answers end the pause.
            due = until + random.random() * min(until - now, policy.max_interval)
            await self._hand_over(job_id, step, checkpoint, due, timeout)
            return "paused"
        clock = policy.clock
        wait: JobWait | None = None
        try:
            if checkpoint is None:
                wait = wait_for_job(client, job_id, policy=policy, timeout=timeout)
            else:
                wait = wait_for_job(client, job_id, policy=policy, resume=checkpoint)
            wait._begin(clock())
            request_timeout = wait._request_timeout(clock())
            try:
                job = await client.get_job(job_id, timeout=request_timeout)
            except JobPollError as exc:
                if exc.stops_all:
                    logger.error(  # noqa: TRY400 - no traceback: the message says it all
                        "job %s: not polled, this worker cannot poll: %s", job_id, exc
                    )
                    await self._held(job_id, step, exc)
                    retry_at = time.time() + policy.max_interval
                    await self._hand_over(job_id, step, checkpoint, retry_at, timeout)
                    return "held"
                if exc.throttles:
                    await self._throttled(exc, gen, streak)
                wait._failed(exc, clock())
            else:
                if streak:
                    await self._calm(keys=[self._pause_key], args=[gen])
                wait._answered(job, clock())
                if job.is_terminal:
                    error = JobFailedError(job) if job.failed else None
                    await self._deliver(JobResult(job_id, job, error), step, wait.polls)
                    return "over"
        except JobPollError as exc:  # the wait's own end (a CheckpointError too: no restart)
            last = None if wait is None else wait.job
            polls = 0 if wait is None else wait.polls
            await self._deliver(JobResult(job_id, last, exc), step, polls)
            return "over"
        saved = wait.checkpoint()
        due = _epoch(saved["next_poll_at"]) or time.time()
        deadline = _epoch(saved.get("deadline"))
        if deadline is not None:
            due = min(due, deadline)
        await self._hand_over(job_id, step, saved, due)
        return "polled"

    async def _hand_over(
        self,
        job_id: str,
        step: int,
        checkpoint: dict[str, Any] | None,
        due: float,
        timeout: float | None = None,  # noqa: ASYNC109 - the wait's deadline
    ) -> None:
        first = {"timeout": timeout} if checkpoint is None else {}
        saq_job, score = self._link(job_id, step + 1, checkpoint, due, **first)
        await self._advance(
            keys=[self._wait_key(job_id), *self._saq_keys(saq_job.key)],
            args=[self.queue.serialize(saq_job), score, step, step + 1],
        )

    async def _held(self, job_id: str, step: int, error: JobPollError) -> None:
        """Keep the setup error this link met in the wait's record, and announce it, for the
        submitter's `results()` to raise (see there)."""
        held = {**result_to_json(JobResult(job_id, None, error)), "step": step}
        await self._hold(
            keys=[self._wait_key(job_id), self._channel], args=[step, json.dumps(held), job_id]
        )

    async def _throttled(self, error: JobPollError, gen: int, streak: int) -> None:
        policy = self.policy
        doubling = min(policy.initial * 2.0**streak, policy.max_interval)
        pause = policy.retry_delay(doubling, getattr(error, "retry_after", None))
        if await self._throttle(keys=[self._pause_key], args=[gen, time.time() + pause]):
            logger.info("%s; every worker's polls pause for %.1f s", error, pause)

    async def _deliver(self, result: JobResult, step: int, polls: int) -> None:
        data = result_to_json(result, polls=polls)
        saq_job, _ = self._saq_job(
            self.on_outcome or "",
            f"jobpoll:outcome:{result.job_id}",
            {"result": data},
            timeout=self.outcome_timeout,
            retries=self.outcome_retries,
            ttl=600,
        )
        keys = [
            self._wait_key(result.job_id),
            *self._saq_keys(saq_job.key),
            self._delivered_key,
            self._channel,
        ]
        await self._finish(
            keys=keys,
            args=[
                self.queue.serialize(saq_job) if self.on_outcome else "",
                0,
                step,
                json.dumps(data),
                math.ceil(self.outcome_ttl),
                result.job_id,
            ],
        )

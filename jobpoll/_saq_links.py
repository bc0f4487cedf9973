"""`Links`: how the waits of one SAQ queue are kept in Redis (see `_saq` for what it holds).

A wait is a chain of SAQ jobs, its links; each hand-over from one link to the next, or to the
outcome, is one Lua script (`_saq_scripts`) that checks the wait's record and writes SAQ's own
records the way `RedisQueue.enqueue` does, in the same atomic step.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, cast

from saq import Job as SaqJob
from saq.job import Status
from saq.queue.redis import RedisQueue

from jobpoll import _saq_scripts as scripts
from jobpoll._errors import JobPollError
from jobpoll._models import JobResult

__all__ = ["POLL_FUNCTION", "Links", "load_result", "result_to_json"]

logger = logging.getLogger("jobpoll")

#: The name the poll step is registered under in a SAQ worker.
POLL_FUNCTION = "jobpoll.poll"

#: Seconds a link's SAQ record is kept once it ran. Not 0 (deleted at once): SAQ's sweep may
#: take a link for stuck just as a worker picks it up (its status not yet "active"), have the
#: worker abort it, and wait for its record to end before it retries it; with no record left it
#: would give up, and a link aborted before its hand-over would end its chain. Kept a while,
#: the link is retried, and a retry of a link already handed over does nothing.
_LINK_TTL = 10


def result_to_json(result: JobResult, *, polls: int | None = None) -> dict[str, Any]:
    """A `JobResult` as the JSON object the outcome function is enqueued with: what
    `JobResult.to_dict()` writes (`jobId`, `job` in the service's JSON, `error` as its `type`,
    `message` and `attributes`), plus `ok` and the number of `polls` the wait made."""
    return {**result.to_dict(), "ok": result.ok, "polls": polls}


def load_result(data: dict[str, Any]) -> JobResult:
    """The `JobResult` an outcome function was enqueued with (see `result_to_json`); its
    `error` is an instance of the same class, with the same message and attributes."""
    return JobResult.from_dict({key: data[key] for key in ("jobId", "job", "error")})


async def _batches(keys: AsyncIterator[Any], size: int) -> AsyncIterator[list[Any]]:
    batch: list[Any] = []
    async for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class Links:
    """The records of one queue's waits in Redis, and the scripts that change them."""

    def __init__(
        self,
        queue: RedisQueue,
        *,
        on_outcome: str | None,
        poll_timeout: float,
        outcome_ttl: float,
        outcome_retries: int,
        outcome_timeout: float,
    ) -> None:
        self.queue = queue
        self.redis = redis = queue.redis
        self._on_outcome = on_outcome
        self._poll_timeout = poll_timeout
        self._outcome_ttl = outcome_ttl
        self._outcome_retries = outcome_retries
        self._outcome_timeout = outcome_timeout
        self.prefix = f"jobpoll:{queue.name}:"
        self._pause_key = self.prefix + "pause"
        self._delivered_key = self.prefix + "delivered"
        #: The channel each outcome's job id is announced on.
        self.channel = self.prefix + "over"
        self._submit_script = redis.register_script(scripts.SUBMIT)
        self._advance_script = redis.register_script(scripts.ADVANCE)
        self._finish_script = redis.register_script(scripts.FINISH)
        self._begin_script = redis.register_script(scripts.BEGIN)
        self._throttle_script = redis.register_script(scripts.THROTTLE)
        self._calm_script = redis.register_script(scripts.CALM)
        self._delivered_script = redis.register_script(scripts.DELIVERED)
        self._hold_script = redis.register_script(scripts.HOLD)
        self._mend_script = redis.register_script(scripts.MEND)

    async def submit(
        self,
        ids: list[str],
        timeout: float | None,  # noqa: ASYNC109 - the waits' deadline, not this call's
    ) -> list[bool]:
        """Start a wait on each id not waited for already; per id, whether one started."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                saq_job, score = self.link(job_id, 0, None, 0.0, timeout=timeout)
                await self._submit_script(
                    keys=[self.wait_key(job_id), *self.saq_keys(saq_job.key)],
                    args=[self.queue.serialize(saq_job), score, "" if timeout is None else timeout],
                    client=pipe,
                )
            started = await pipe.execute()
        return [bool(flag) for flag in started]

    # -- keys

    def wait_key(self, job_id: str) -> str:
        return f"{self.prefix}wait:{job_id}"

    def saq_keys(self, job_key: str) -> list[str]:
        queue = self.queue
        return [queue.job_id(job_key), queue.namespace("incomplete"), queue.namespace("queued")]

    def saq_job(
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

    def link(
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
            meta["answers"] = checkpoint.get("answers")
            meta["next_poll_at"] = checkpoint.get("next_poll_at")
        return self.saq_job(
            POLL_FUNCTION,
            f"jobpoll:{job_id}:{step}",
            {"job_id": job_id, "step": step, "checkpoint": checkpoint, **first},
            due=due,
            timeout=self._poll_timeout,
            # A link is retried by SAQ when its worker dies or Redis fails under it; a
            # link that finds itself superseded does nothing, so retries are harmless.
            retries=1000,
            ttl=_LINK_TTL,
            meta=meta,
            progress=progress,
        )

    async def stored(self, job_ids: list[str]) -> tuple[dict[str, JobResult], JobPollError | None]:
        """The kept outcomes of `job_ids`, and a setup error met at the last poll of one of the
        others: one kept at a step not followed by a poll since (the step after it is live)."""
        if not job_ids:
            return {}, None
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(self.wait_key(job_id), ["result", "step", "held"])
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

    async def mend(self) -> int:
        """Enqueue again each wait's live link missing from SAQ's queue since the last call;
        how many (see `SaqWaits.mend`)."""
        redis, queue = self.redis, self.queue
        suspects_key = self.prefix + "suspects"
        before = {
            key.decode(): value.decode()
            for key, value in (await redis.hgetall(suspects_key)).items()  # type: ignore[misc]
        }
        incomplete = queue.namespace("incomplete")
        prefix = self.prefix + "wait:"
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
        stored = self.queue.deserialize(await self.redis.get(self.queue.job_id(link_key)))
        if stored is not None and stored.kwargs:
            checkpoint = stored.kwargs.get("checkpoint")
            timeout = stored.kwargs.get("timeout")
        else:  # its record is gone too: the wait starts over, with its timeout
            checkpoint = None
            raw = self.redis.hget(self.wait_key(job_id), "timeout")
            value = await cast("Awaitable[bytes | None]", raw)
            timeout = None if value is None else float(value)
        first = {"timeout": timeout} if checkpoint is None else {}
        saq_job, _ = self.link(job_id, step, checkpoint, 0.0, **first)
        done = await self._mend_script(
            keys=[self.wait_key(job_id), *self.saq_keys(link_key)],
            args=[self.queue.serialize(saq_job), 0, step],
        )
        if done:
            logger.warning(
                "job %s: its next poll was lost from the queue; enqueued it again%s",
                job_id,
                "" if checkpoint is not None else " (from the start: its checkpoint was lost too)",
            )
        return int(done)

    async def hand_over(
        self,
        job_id: str,
        step: int,
        checkpoint: dict[str, Any] | None,
        due: float,
        timeout: float | None = None,  # noqa: ASYNC109 - the wait's deadline
    ) -> None:
        first = {"timeout": timeout} if checkpoint is None else {}
        saq_job, score = self.link(job_id, step + 1, checkpoint, due, **first)
        await self._advance_script(
            keys=[self.wait_key(job_id), *self.saq_keys(saq_job.key)],
            args=[self.queue.serialize(saq_job), score, step, step + 1],
        )

    async def held(self, job_id: str, step: int, error: JobPollError) -> None:
        """Keep the setup error this link met in the wait's record, and announce it, for the
        submitter's `results()` to raise (see there)."""
        held = {**result_to_json(JobResult(job_id, None, error)), "step": step}
        await self._hold_script(
            keys=[self.wait_key(job_id), self.channel], args=[step, json.dumps(held), job_id]
        )

    async def begin(self, job_id: str, step: int) -> tuple[bool, float, int, int]:
        """Whether the link `step` of the job's wait is live, and the fleet's pause: until
        when (epoch seconds), how many pauses began, how many throttled answers in a row."""
        live, until, gen, streak = await self._begin_script(
            keys=[self.wait_key(job_id), self._pause_key], args=[step]
        )
        return bool(live), float(until), int(gen), int(streak)

    async def throttle(self, gen: int, until: float) -> bool:
        """Pause every worker's polls until `until` (epoch seconds), if no pause began since
        the poll was sent (`gen`); whether this one began."""
        return bool(await self._throttle_script(keys=[self._pause_key], args=[gen, until]))

    async def calm(self, gen: int) -> None:
        """An answer to a poll sent in pause `gen`: the throttled answers in a row end."""
        await self._calm_script(keys=[self._pause_key], args=[gen])

    async def was_delivered(self, job_id: str) -> bool:
        """Whether the outcome function already returned for the job."""
        delivered = self.redis.hget(self.wait_key(job_id), "delivered")
        return await cast("Awaitable[bytes | None]", delivered) is not None

    async def mark_delivered(self, job_id: str) -> None:
        await self._delivered_script(keys=[self.wait_key(job_id)])

    async def delivered(self) -> int:
        """How many outcomes have been handed to the outcome function (or stored), in all."""
        value = await self.redis.get(self._delivered_key)
        return int(value or 0)

    async def deliver(self, result: JobResult, step: int, polls: int) -> None:
        data = result_to_json(result, polls=polls)
        saq_job, _ = self.saq_job(
            self._on_outcome or "",
            f"jobpoll:outcome:{result.job_id}",
            {"result": data},
            timeout=self._outcome_timeout,
            retries=self._outcome_retries,
            ttl=600,
        )
        keys = [
            self.wait_key(result.job_id),
            *self.saq_keys(saq_job.key),
            self._delivered_key,
            self.channel,
        ]
        await self._finish_script(
            keys=keys,
            args=[
                self.queue.serialize(saq_job) if self._on_outcome else "",
                0,
                step,
                json.dumps(data),
                math.ceil(self._outcome_ttl),
                result.job_id,
            ],
        )

"""`Links`: the records of a SAQ queue's waits in Redis, and the Lua scripts that change them.

Under `jobpoll:<queue name>:`, besides SAQ's own records:

- `wait:<job id>`, a hash: `step`, the live link's number, while the job is waited for (and
  `since`, when it was submitted, on Redis's clock, in whole seconds; `timeout`, the wait's;
  `held`, a worker's setup error met at its last poll; `runner` and `begun`, the worker
  running the live link and when it began, `_saq_rescue`); then `result`, the outcome as
  JSON, kept `outcome_ttl`, with its delivery's state (`_saq_outcomes`).
- `rate` and `answers`, the rate every worker's polls share (`_saq_rate`, which tells how).
- `delivered` (outcomes delivered, counted), `over` (the channel announcing them), `suspects` and
  `mending` (`Links.mend`), `worker:<token>`, `rescuing` and `unbegun` (`_saq_rescue`).

Every time a link carries (when it is due, its checkpoint's) is on Redis's clock (`TIME`, as
each worker's `FleetRate` mirrors it), and its SAQ job has no SAQ `timeout`: SAQ's sweep, which
judges a job stuck by the sweeping worker's own clock, leaves links alone, and jobpoll bounds
a link's run itself (`poll_timeout`) and hands on those of a dead worker (`_saq_rescue`).

Each hand-over is one script that checks `step` and writes the next SAQ job the way
`RedisQueue.enqueue` does: a link run twice finds `step` moved on and does nothing, so a job id
has one chain and one outcome. The `saq` extra's version range is the one they are tested with.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, cast

import attrs
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from saq import Job as SaqJob
from saq.job import Status
from saq.queue.redis import RedisQueue

from jobpoll._errors import JobPollError
from jobpoll._models import JobResult
from jobpoll._saq_form import carried, link_arguments
from jobpoll._saq_rate import ANSWERED, CUT, HORIZON, READ, TURN, Cut, FleetRate, Turn

logger = logging.getLogger("jobpoll")

#: The name the poll step is registered under in a SAQ worker.
POLL_FUNCTION = "jobpoll.poll"

#: Seconds a link's SAQ record is kept once it ran, not 0: SAQ's sweep, taking a link for stuck
#: as a worker picks it up, aborts it and waits for its record to end before it retries it; with
#: no record left it would give up, and end the chain.
LINK_TTL = 10

# Ends the scripts that enqueue a SAQ job (`Links.enqueue`): KEYS[1:4] are the wait's record,
# the job's key, SAQ's `incomplete` set and `queued` list; ARGV[1:2] the job ('' for a job
# with no function: no `on_outcome`) and its score (0: due now; -t: due at t, `DUE`).
ENQUEUE = """
if ARGV[1] ~= '' then
  redis.call('SET', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[2], KEYS[2])
  if ARGV[2] == '0' then redis.call('RPUSH', KEYS[4], KEYS[2]) end
end
"""

#: Moves the links due by Redis's clock into SAQ's queue, as SAQ's scheduler does its jobs
#: by the worker's: a link due at `t` is scored `-t` in `incomplete` (KEYS[1]), below the
#: scores SAQ's scheduler reads, so that no worker's clock moves it early.
DUE = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local since = string.format('%.6f', -now)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], since, '(0', 'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], 0, id)
  redis.call('RPUSH', KEYS[2], id)
end
return #due
"""

_SUBMIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'step', 0, 'since', redis.call('TIME')[1])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'timeout', ARGV[3]) end
"""

#: Moves the wait's live link on, from ARGV[3] to ARGV[4], or returns 0 (not live).
ADVANCE = """
if redis.call('HGET', KEYS[1], 'step') ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'step', ARGV[4])
redis.call('HDEL', KEYS[1], 'runner', 'begun')
"""

_MEND = """
if redis.call('HGET', KEYS[1], 'step') ~= ARGV[3] then return 0 end
if redis.call('ZSCORE', KEYS[3], KEYS[2]) then return 0 end
"""

_FINISH = """
if redis.call('HGET', KEYS[1], 'step') ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], 'step', 'runner', 'begun')
redis.call('HSET', KEYS[1], 'result', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
if ARGV[1] == '' then  -- no function to deliver it to: delivered once kept
  redis.call('HSET', KEYS[1], 'delivered', 1)
  redis.call('INCR', KEYS[5])
end
redis.call('PUBLISH', KEYS[6], ARGV[6])
"""

# Takes the poll's turn (`_saq_rate.TURN`) if its link is live, noting its runner (ARGV[7])
# and when it began.
_BEGIN = """
if redis.call('HGET', KEYS[1], 'step') ~= ARGV[1] then return nil end
redis.call('HSET', KEYS[1], 'runner', ARGV[7], 'begun', redis.call('TIME')[1])
"""

_HOLD = """
if redis.call('HGET', KEYS[1], 'step') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'held', ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
"""


def result_to_json(result: JobResult, *, polls: int | None = None) -> dict[str, Any]:
    """A `JobResult` as the JSON object the outcome function is enqueued with: what
    `JobResult.to_dict()` writes (`jobId`, `job` in the service's JSON, `error` as its `type`,
    `message` and `attributes`), plus `ok` and the number of `polls` the wait made."""
    return {**result.to_dict(), "ok": result.ok, "polls": polls}


def load_result(data: dict[str, Any]) -> JobResult:
    """The `JobResult` an outcome function was enqueued with (see `result_to_json`); its
    `error` is an instance of the same class, with the same message and attributes."""
    return JobResult.from_dict({key: data[key] for key in ("jobId", "job", "error")})


def _link_key(job_id: str, step: int | str) -> str:
    return f"jobpoll:{job_id}:{step}"


@attrs.define(slots=False, kw_only=True)
class Links:
    """The records of one queue's waits in Redis, and the scripts that change them."""

    queue: RedisQueue
    poll_timeout: float
    outcome_ttl: float

    def __attrs_post_init__(self) -> None:
        self.redis = redis = self.queue.redis
        self.prefix = f"jobpoll:{self.queue.name}:"
        self.rate_keys = [self.prefix + "rate", self.prefix + "answers"]
        #: How many outcomes were delivered (`_saq_outcomes`).
        self.delivered_key = self.prefix + "delivered"
        #: The channel each outcome's job id (or held error's) is announced on.
        self.channel = self.prefix + "over"
        self._submit = redis.register_script(_SUBMIT + ENQUEUE + "return 1")
        self._advance = redis.register_script(ANSWERED + ADVANCE + ENQUEUE + "return 1")
        self._mend = redis.register_script(_MEND + ENQUEUE + "return 1")
        self._finish = redis.register_script(ANSWERED + _FINISH + ENQUEUE + "return 1")
        self._begin = redis.register_script(_BEGIN + TURN)
        self._read_rate = redis.register_script(READ)
        self._cut = redis.register_script(CUT)
        self._hold = redis.register_script(_HOLD)
        self._due = redis.register_script(DUE)

    def wait_key(self, job_id: str) -> str:
        return f"{self.prefix}wait:{job_id}"

    def link_id(self, job_id: str, step: int | str) -> str:
        """The SAQ id (its record's key) of link `step` of the wait on `job_id`."""
        return self.queue.job_id(_link_key(job_id, step))

    def enqueue(
        self,
        script: AsyncScript,
        job_id: str,
        job: SaqJob,
        *args: Any,
        keys: Sequence[str] = (),
        client: Pipeline | None = None,
    ) -> Awaitable[Any]:
        queue = self.queue
        saq_keys = [queue.job_id(job.key), queue.namespace("incomplete"), queue.namespace("queued")]
        return script(
            keys=[self.wait_key(job_id), *saq_keys, *keys],
            args=[queue.serialize(job) if job.function else "", -job.scheduled, *args],
            client=client,
        )

    async def release_due(self) -> int:
        """Move the links due by now (Redis's clock) into SAQ's queue; how many (at most
        1,000 a call)."""
        queue = self.queue
        keys = [queue.namespace("incomplete"), queue.namespace("queued")]
        return int(await self._due(keys=keys))

    def saq_job(self, scheduled: float = 0.0, **fields: Any) -> SaqJob:
        """A SAQ job as `RedisQueue.enqueue` stores it; `scheduled`: its score, when it is due
        on Redis's clock (0: due now)."""
        return SaqJob(
            queue=self.queue,
            retry_delay=1.0,
            retry_backoff=60.0,
            scheduled=math.ceil(scheduled) if scheduled > 0 else 0,
            queued=int(time.time() * 1000),  # shown by SAQ's UI only
            status=Status.QUEUED,
            **fields,
        )

    def link(
        self,
        job_id: str,
        step: int,
        checkpoint: dict[str, Any] | None,
        *,
        due: float | None = None,
        scheduled: float = 0.0,
        timeout: float | None = None,
    ) -> SaqJob:
        """Link `step` of the wait: with its checkpoint (in either form, `_saq_form`), or
        (starting) with its `timeout`;
        `due`: when its poll is due (None: at once), `scheduled`: when SAQ runs it (0: now),
        both on Redis's clock."""
        kwargs: dict[str, Any] = {"job_id": job_id, "step": step, **link_arguments(checkpoint)}
        # `meta` and `progress`, for SAQ's UI: the job's status and progress, the polls made and
        # when the next is due (its job id and step are in its key), as the checkpoint has them.
        meta: dict[str, Any] = {}
        progress = 0.0
        if due is not None:
            kwargs["due"] = due
        if checkpoint is None:
            kwargs["timeout"] = timeout
        else:
            job = checkpoint.get("job")
            if job is not None:
                meta["status"] = job.get("status")
                meta["progress"] = job.get("progress")
                progress = (job.get("progress") or 0) / 100
            meta["polls"] = checkpoint.get("polls", 0)
            meta["next_poll_at"] = checkpoint.get("next_poll_at")
        return self.saq_job(
            scheduled,
            function=POLL_FUNCTION,
            key=_link_key(job_id, step),
            kwargs=kwargs,
            timeout=0,  # none of SAQ's: `SaqWaits.poll` bounds a run, `_saq_rescue` a death
            # A link is retried by SAQ when it fails (Redis failing under it); a link that
            # finds itself superseded does nothing, so retries are harmless.
            retries=1000,
            ttl=LINK_TTL,
            meta=meta,
            progress=progress,
        )

    async def submit(
        self,
        ids: list[str],
        timeout: float | None,  # noqa: ASYNC109 - the waits' deadline, not this call's
    ) -> list[bool]:
        """Start a wait on each id not waited for already; per id, whether one started."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                first = self.link(job_id, 0, None, timeout=timeout)
                wait_timeout = "" if timeout is None else timeout
                await self.enqueue(self._submit, job_id, first, wait_timeout, client=pipe)
            started = await pipe.execute()
        return [bool(flag) for flag in started]

    async def hand_over(
        self,
        job_id: str,
        step: int,
        checkpoint: dict[str, Any] | None,
        due: float,
        now: float,
        timeout: float | None = None,  # noqa: ASYNC109 - the wait's deadline
        *,
        answered_at: float | None = None,
        lost: float = 0.0,
    ) -> None:
        """Enqueue the link after `step`, due at `due`, if `step` is live; `now`: the time
        then (both epoch seconds on Redis's clock). `answered_at`: when the link's poll was
        accepted, on Redis's clock, for the shared rate to count (None: it was not). `lost`:
        seconds the wait lost that `checkpoint`'s deadline does not leave out yet: the next
        link counts itself as late (its `due` earlier) by as much."""
        scheduled = due if due > now else 0.0
        following = self.link(
            job_id, step + 1, checkpoint, due=due - lost, scheduled=scheduled, timeout=timeout
        )
        await self.enqueue(
            self._advance,
            job_id,
            following,
            step,
            step + 1,
            "" if answered_at is None else repr(answered_at),
            keys=self.rate_keys,
        )

    async def deliver(
        self, data: dict[str, Any], outcome: SaqJob, step: int, *, answered_at: float | None
    ) -> bool:
        """End the wait with its outcome (`result_to_json`), if `step` is live, and enqueue
        `outcome`, its SAQ job; whether it ended. `answered_at` as for `hand_over`."""
        job_id = str(data["jobId"])
        ended = await self.enqueue(
            self._finish,
            job_id,
            outcome,
            step,
            json.dumps(data),
            math.ceil(self.outcome_ttl),
            job_id,
            "" if answered_at is None else repr(answered_at),
            keys=[self.delivered_key, self.channel, *self.rate_keys],
        )
        return bool(ended)

    async def held(self, job_id: str, step: int, error: JobPollError) -> None:
        """Keep and announce the setup error this link met, for `results()` to raise."""
        held = {**result_to_json(JobResult(job_id, None, error)), "step": step}
        await self._hold(
            keys=[self.wait_key(job_id), self.channel], args=[step, json.dumps(held), job_id]
        )

    async def stored(self, job_ids: list[str]) -> tuple[dict[str, JobResult], JobPollError | None]:
        """The kept outcomes of `job_ids`, and a setup error met at the last poll of one of the
        others: one kept at a step not followed by a poll since (the step after it is live)."""
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

    async def begin(
        self, job_id: str, step: int, rate: FleetRate, longest: float, runner: str
    ) -> Turn | None:
        """The turn of link `step` of the job's wait (`_saq_rate.TURN`; a place in line at
        most `longest` seconds away), or None: the link is not live. The wait's record notes
        that worker `runner` runs it."""
        keys = [self.wait_key(job_id), *self.rate_keys]
        for cuts in (str(rate.control.cuts), ""):  # the second time: whatever cut came between
            spacing = repr(rate.spacing())
            args: list[str | int] = [step, spacing, rate.seen, repr(longest), repr(HORIZON)]
            args += [cuts, runner, repr(rate.line_spacing())]
            reply = await self._begin(keys=keys, args=args)
            if reply is None:
                return None
            turn = rate.turn(reply)
            if turn is not None:
                return turn
        raise AssertionError("a turn asked for any cuts is taken")  # pragma: no cover

    async def read_rate(self, rate: FleetRate) -> None:
        """Bring `rate`'s mirror of the shared rate up to date."""
        rate.mirror(await self._read_rate(keys=self.rate_keys, args=[rate.seen]))

    async def cut_rate(self, cut: Cut) -> bool:
        """Write a refusal's cut (or hold) to the shared rate; whether it cut."""
        return bool(await self._cut(keys=self.rate_keys, args=cut.arguments()))

    async def waits(self) -> AsyncIterator[list[str]]:
        """The job id of every wait's record, waiting or ended, a batch at a time."""
        prefix = self.wait_key("")
        cursor = 0
        while True:
            cursor, keys = await self.redis.scan(cursor, match=self.wait_key("*"), count=1000)
            yield [key.decode().removeprefix(prefix) for key in keys]
            if cursor == 0:
                return

    async def mend(self) -> int:
        suspects_key = self.prefix + "suspects"
        raw = await cast("Awaitable[dict[bytes, bytes]]", self.redis.hgetall(suspects_key))
        before = {job_id.decode(): step.decode() for job_id, step in raw.items()}
        suspects: dict[str, str] = {}
        mended = 0
        async for job_ids in self.waits():
            for job_id, step in await self._unqueued(job_ids):
                if before.get(job_id) == step:
                    mended += await self._mend_one(job_id, int(step))
                else:
                    suspects[job_id] = step
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(suspects_key)
            if suspects:
                pipe.hset(suspects_key, mapping=suspects)
            await pipe.execute()
        return mended

    async def _unqueued(self, job_ids: list[str]) -> list[tuple[str, str]]:
        """The job id and step of each live wait among `job_ids` whose link SAQ lost."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(self.wait_key(job_id), "step")
            steps = await pipe.execute()
        live = [
            (job_id, step.decode()) for job_id, step in zip(job_ids, steps, strict=True) if step
        ]
        incomplete = self.queue.namespace("incomplete")
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id, step in live:
                pipe.zscore(incomplete, self.link_id(job_id, step))
            scores = await pipe.execute()
        return [link for link, score in zip(live, scores, strict=True) if score is None]

    async def _mend_one(self, job_id: str, step: int) -> int:
        stored = self.queue.deserialize(await self.redis.get(self.link_id(job_id, step)))
        due = None
        if stored is not None and stored.kwargs:
            checkpoint = carried(stored.kwargs)
            timeout = stored.kwargs.get("timeout")
            due = stored.kwargs.get("due")
        else:  # its record is gone too: the wait starts over, with its timeout
            checkpoint = None
            value = self.redis.hget(self.wait_key(job_id), "timeout")
            timeout = await cast("Awaitable[bytes | None]", value)
        timeout = None if timeout is None else float(timeout)
        live = self.link(job_id, step, checkpoint, due=due, timeout=timeout)
        done = await self.enqueue(self._mend, job_id, live, step)
        if done:
            logger.warning(
                "job %s: its next poll was lost from the queue; enqueued it again%s",
                job_id,
                "" if checkpoint is not None else " (from the start: its checkpoint was lost too)",
            )
        return int(done)

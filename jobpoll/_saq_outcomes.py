"""`Outcomes`: each wait's outcome handed to the user's `on_outcome` function, and what an
operator does with those that could not be: list them, enqueue them again, forget them.

The outcome's SAQ job (`outcome_key`) runs the function through `Outcomes.once`: an `async
def` on the loop, cancelled when it times out; a plain `def` in a thread of jobpoll's own
(`_saq_threads`: one call per job id at a time in a worker, a late return still delivered), so
a function that blocks stalls no poll.

In the wait's record (`_saq_links`), once its outcome is decided: `delivered` once a call
returned (and the queue's `delivered` count goes up, once per record), `failed` the last
failed call's error (`Undelivered`). An outcome is *undelivered* when it is decided, not
delivered, and no job of it is in SAQ's queue (its retries spent, or its job lost, the job's
record included): each script reads that state (`_STATE`) at once, so a call returning as it
is read is never listed.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import math
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

import attrs
import backoff
from saq import Job as SaqJob

from jobpoll._errors import OutcomePending
from jobpoll._redact import Redactor
from jobpoll._saq_books import NO_END, Ended, SaqRecord, Start, booked, script_end, start_of
from jobpoll._saq_links import Links
from jobpoll._saq_outage import FIRST_RETRY, LAST_RETRY
from jobpoll._saq_redis import outage_of
from jobpoll._saq_scripts import ENQUEUE, saq_end, saq_start
from jobpoll._saq_threads import NotCalled, OutcomeThreads

logger = logging.getLogger("jobpoll")

#: Seconds SAQ gives an outcome's job beyond the function's own `timeout`: for jobpoll to
#: write down that the call timed out before SAQ cancels it.
_GRACE = 5
#: The most characters of a failed call's message kept for an operator.
MESSAGE_LENGTH = 500
#: Seconds a call's return is tried to be written down while Redis is away (restarting, full),
#: on the schedule of a worker's other calls (`_saq_outage`).
KEEP_SECONDS = 60.0

# KEYS: the wait's record, the outcome's SAQ job, SAQ's `incomplete` set (then its `queued`
# list, for `ENQUEUE`).
_STATE = """
local function state()
  if redis.call('HEXISTS', KEYS[1], 'step') == 1 then return 'waiting' end
  if redis.call('HEXISTS', KEYS[1], 'result') == 0 then return 'unknown' end
  if redis.call('HEXISTS', KEYS[1], 'delivered') == 1 then return 'delivered' end
  if redis.call('ZSCORE', KEYS[3], KEYS[2]) and redis.call('EXISTS', KEYS[2]) == 1 then
    return 'queued'
  end
  return 'undelivered'
end
"""

_LIST = _STATE + "return {state(), redis.call('HGET', KEYS[1], 'failed') or ''}"

_REDELIVER = (
    _STATE
    + """
if state() ~= 'undelivered' then return 0 end
redis.call('HDEL', KEYS[1], 'failed')
"""
    + ENQUEUE
    + "return 1"
)

_FORGET = (
    _STATE
    + """
local now = state()
if now == 'delivered' or now == 'undelivered' then redis.call('DEL', KEYS[1]) end
return now
"""
)

# KEYS: the wait's record, the outcome's SAQ id; ARGV: its SAQ start (`saq_start`).
_OPENED = saq_start("KEYS[2]", "ARGV[1]") + "return redis.call('HGET', KEYS[1], 'delivered')"

# KEYS: the wait's record, the queue's `delivered` count, the outcome's SAQ id, SAQ's `active`
# and `incomplete`; ARGV: its SAQ end (`saq_end`).
_RETURNED = (
    saq_end("KEYS[3]", "KEYS[4]", "KEYS[5]", "ARGV[1]", "ARGV[2]")
    + """
if redis.call('HEXISTS', KEYS[1], 'delivered') == 1 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'delivered', 1)
  redis.call('HDEL', KEYS[1], 'failed')
end
redis.call('INCR', KEYS[2])
return 1
"""
)

_FAILED = """
if redis.call('HEXISTS', KEYS[1], 'result') == 1
  and redis.call('HEXISTS', KEYS[1], 'delivered') == 0 then
  redis.call('HSET', KEYS[1], 'failed', ARGV[1])
end
"""


def outcome_key(job_id: str) -> str:
    """The SAQ key of the job delivering a wait's outcome: `jobpoll:<job id>:outcome`, which
    no poll link's key (`jobpoll:<job id>:<step>`, a number last) can be, whatever the ids."""
    return f"jobpoll:{job_id}:outcome"


@attrs.frozen
class Undelivered:
    """An outcome decided but not delivered: each call of `on_outcome` raised or timed out,
    SAQ's retries are spent (or the outcome's SAQ job was lost, with no call failing).

    Attributes:
        job_id: the job whose outcome it is.
        error_type: the class of the last failed call's error (`module.Name`; a builtin's
            bare name), or None when no call failed.
        error_message: its message, the worker's API key hidden, at most 500 characters.
        attempts: SAQ's attempt number of that call (None when no call failed).
    """

    job_id: str
    error_type: str | None
    error_message: str | None
    attempts: int | None


def _while_redis_is_away(
    call: Callable[..., Awaitable[Any]],
) -> Callable[..., Awaitable[Any]]:
    """`call` (an `async def`: `backoff` tells coroutine functions by their kind), made again
    while it fails for want of Redis (`outage_of`), for `KEEP_SECONDS` at most: a call of the
    outcome function that returned as Redis went away is written down once Redis is back, not
    made again by SAQ's retry of its job."""
    return backoff.on_exception(
        backoff.expo,
        Exception,
        giveup=lambda error: not outage_of(error),
        max_time=KEEP_SECONDS,
        factor=2 * FIRST_RETRY,
        max_value=LAST_RETRY,
        jitter=None,
        logger=None,
    )(call)


def _error_type(error: BaseException) -> str:
    kind = type(error)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _in_thread(function: Callable[..., Any]) -> bool:
    """Whether `function` is a plain one (run in a thread), not an `async def`."""
    call = getattr(function, "__call__", None)  # noqa: B004 - an object with an async __call__
    return not (inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call))


@attrs.define(slots=False, kw_only=True)
class Outcomes:
    """The delivery of one queue's outcomes to `function` (the user's `on_outcome`)."""

    links: Links
    function: str | None
    retries: int
    timeout: float
    #: Hides the worker's API key in a failed call's message (set by the worker's startup).
    redactor: Redactor | None = None
    #: Where plain calls run (from the worker's start to its stop: `start`, `close`).
    threads: OutcomeThreads | None = None

    def __attrs_post_init__(self) -> None:
        redis = self.links.redis
        self._list = redis.register_script(_LIST)
        self._redeliver = redis.register_script(_REDELIVER)
        self._forget = redis.register_script(_FORGET)
        self._opened = redis.register_script(_OPENED)
        self._returned = redis.register_script(_RETURNED)
        self._failed = redis.register_script(_FAILED)

    def job(self, data: dict[str, Any]) -> SaqJob:
        """The SAQ job that hands `data` (`result_to_json`) to the outcome function ('' for
        none: the script enqueues nothing)."""
        return self.links.saq_job(
            function=self.function or "",
            key=outcome_key(data["jobId"]),
            kwargs={"result": data},
            timeout=math.ceil(self.timeout) + _GRACE,
            retries=self.retries,
            ttl=600,
        )

    def _keys(self, job_id: str) -> list[str]:
        queue = self.links.queue
        outcome = queue.job_id(outcome_key(job_id))
        return [self.links.wait_key(job_id), outcome, queue.namespace("incomplete")]

    def wrap(self, functions: Iterable[Any]) -> list[tuple[str, Any]]:
        """The user's functions, named as SAQ names them, the outcome one called through
        `once`; a ValueError if it is not among them."""
        named = [
            entry if isinstance(entry, tuple) else (entry.__qualname__, entry)
            for entry in functions
        ]
        if self.function is not None and self.function not in dict(named):
            raise ValueError(
                f"on_outcome {self.function!r} is not among the worker's functions: every"
                " worker of the queue may be handed an outcome, so each must have it"
            )
        return [
            (name, self.once(function) if name == self.function else function)
            for name, function in named
        ]

    def once(self, function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        """`function`, not called again for a job once a call returned (SAQ may retry), waited
        for at most `timeout` by each SAQ job; a plain one in a thread (`_saq_threads`), whose
        call a retry waits for while it runs. Each call's end is kept in the wait's record, and
        the SAQ job's start and end with it (`_saq_books`; the end only of a call on the loop:
        one in a thread may return after its SAQ job ended)."""
        in_thread = _in_thread(function)

        async def deliver_once(ctx: dict[str, Any], *, result: dict[str, Any]) -> Any:
            job_id = str(result["jobId"])
            record = self.links.wait_key(job_id)
            started = booked(ctx)
            job = None if started is None else started.job
            delivered = await self._open(record, None) if started is None else started.found
            if delivered:
                logger.info("job %s: outcome already delivered, not again", job_id)
                return None
            threads = self.threads
            if not in_thread:
                return await self._on_the_loop(function, ctx, result, job, started is not None)
            if threads is None:
                raise RuntimeError("the worker was not started with SaqWaits.worker_settings")
            call = functools.partial(function, ctx, result=result)

            def in_a_thread() -> Coroutine[Any, Any, Any]:
                # Asked again once a place is free: a call that returned since this job found
                # the outcome undelivered (one this job would have waited for had it come a
                # moment sooner, or another worker's, while this one waited) delivered it.
                first = functools.partial(self._undelivered, record)
                return self._kept(threads.run(job_id, call, first), ctx, job_id)

            try:
                async with asyncio.timeout(self.timeout) as deadline:
                    return await asyncio.shield(threads.task(job_id, in_a_thread))
            except TimeoutError:
                if not deadline.expired():
                    raise
                await self._keep_failure(ctx, record, "TimeoutError", self._late(job_id, threads))
                raise

        return deliver_once

    async def _on_the_loop(
        self,
        function: Callable[..., Awaitable[Any]],
        ctx: dict[str, Any],
        result: dict[str, Any],
        job: SaqJob | None,
        found_at_start: bool,
    ) -> Any:
        """A call of an `async def` outcome function, in the job that delivers `result`: cut at
        `timeout` (and by SAQ's abort, as any job), its return then written down beyond it,
        while Redis is away too (`_keep_return`), in a task of its own that a retry of the job
        in this worker waits for, rather than calling again. `found_at_start`: whether the job
        read the outcome undelivered at its start, before the worker's `before_process` hooks,
        and must read it again (a call that returned meanwhile delivered it)."""
        job_id = str(result["jobId"])
        record = self.links.wait_key(job_id)
        threads = self.threads
        pending = None if threads is None else threads.pending(job_id)
        if pending is not None:  # an earlier try's return, still being written down
            value = await asyncio.shield(pending)
            return value.result if isinstance(value, Ended) else value  # its end is SAQ's
        if found_at_start and not await self._undelivered(record):
            logger.info("job %s: outcome already delivered, not again", job_id)
            return None
        try:
            value = await self._cut(function(ctx, result=result))
        except Exception as exc:
            await self._keep_failure(ctx, record, _error_type(exc), str(exc))
            raise

        def written() -> Coroutine[Any, Any, Any]:
            return self._written(record, value, job)

        if threads is None:
            return await written()
        return await asyncio.shield(threads.task(job_id, written))

    async def _cut(self, call: Awaitable[Any]) -> Any:
        """What `call` (of an `async def` outcome function) returns within `timeout`; else a
        `TimeoutError` saying so, the call cancelled."""
        try:
            async with asyncio.timeout(self.timeout) as deadline:
                return await call
        except TimeoutError:
            if deadline.expired():
                raise TimeoutError(self._late("", None)) from None
            raise

    @_while_redis_is_away
    async def _undelivered(self, record: str) -> bool:
        """Whether the outcome of the wait's `record` is still to be delivered."""
        return not await self._open(record, None)

    def starts(self) -> dict[str, Start]:
        """The start of the outcome function's jobs (`_saq_books.LinkQueue`), by its name."""
        return {} if self.function is None else {self.function: self._start}

    async def _start(self, job: SaqJob) -> bool:
        """Whether the outcome `job` delivers was delivered; its SAQ start written."""
        data = (job.kwargs or {})["result"]
        return await self._open(self.links.wait_key(str(data["jobId"])), job)

    async def _open(self, record: str, job: SaqJob | None) -> bool:
        """Whether the outcome of the wait's `record` was delivered; `job`'s SAQ start written
        (None: none to write)."""
        queue = self.links.queue
        saq_id = queue.job_id(outcome_key("")) if job is None else job.id
        start = "" if job is None else start_of(job).record
        return bool(await self._opened(keys=[record, saq_id], args=[start]))

    async def _kept(
        self, call: Awaitable[Any], ctx: dict[str, Any], job_id: str, job: SaqJob | None = None
    ) -> Any:
        """What `call` (of the outcome function) returns, once kept as delivered (with
        `job`'s SAQ end, if any: returned as `Ended`); an error it raises, once kept as the
        last failure."""
        record = self.links.wait_key(job_id)
        try:
            value = await call
        except NotCalled:
            logger.info("job %s: outcome already delivered, not again", job_id)
            return None
        except Exception as exc:
            await self._keep_failure(ctx, record, _error_type(exc), str(exc))
            raise
        return await self._written(record, value, job)

    async def _written(self, record: str, value: Any, job: SaqJob | None) -> Any:
        """`value`, a call's return, once kept as delivered in the wait's `record` (with
        `job`'s SAQ end, if any: returned as `Ended`)."""
        end = script_end(job, value)
        await self._keep_return(record, end)
        return value if end is None else Ended(value)

    @_while_redis_is_away
    async def _keep_return(self, record: str, end: SaqRecord | None) -> None:
        queue = self.links.queue
        saq_id = queue.job_id(outcome_key("")) if end is None else end.saq_id
        keys = [record, self.links.delivered_key, saq_id]
        keys += [queue.namespace("active"), queue.namespace("incomplete")]
        await self._returned(keys=keys, args=NO_END if end is None else end.arguments())

    def _late(self, job_id: str, threads: OutcomeThreads | None) -> str:
        """Why a call is not over within `timeout`."""
        within = f"within {self.timeout:g} s"
        if threads is None:
            return f"did not return {within}"
        if threads.started(job_id):
            return f"did not return {within} (it runs on in its thread: delivered if it returns)"
        if threads.waiting(job_id):
            return f"found no free thread {within}: all {threads.size} run calls not returned yet"
        return f"did not return {within}"

    async def _keep_failure(
        self, ctx: dict[str, Any], record: str, kind: str, message: str
    ) -> None:
        redactor = self.redactor
        message = (
            message[:MESSAGE_LENGTH] if redactor is None else redactor.cut(message, MESSAGE_LENGTH)
        )
        job = ctx.get("job")
        failed = {"type": kind, "message": message, "attempts": getattr(job, "attempts", None)}
        await self._failed(keys=[record], args=[json.dumps(failed)])

    def start(self, threads: int) -> None:
        """At a worker's start: its plain outcome calls get `threads` threads at most."""
        self.threads = OutcomeThreads(threads)

    def close(self) -> list[asyncio.Task[Any]]:
        """At a worker's stop: the tasks of its outcome calls still running, for it to stop.
        Their threads run out unheard: those outcomes stay undelivered, to be called again."""
        threads, self.threads = self.threads, None
        return [] if threads is None else threads.tasks()

    async def delivered(self) -> int:
        value = await self.links.redis.get(self.links.delivered_key)
        return int(value or 0)

    async def undelivered(self) -> list[Undelivered]:
        found: list[Undelivered] = []
        async for job_ids in self.links.waits():
            async with self.links.redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    await self._list(keys=self._keys(job_id), client=pipe)
                states = await pipe.execute()
            for job_id, (state, failed) in zip(job_ids, states, strict=True):
                if state == b"undelivered":
                    error = json.loads(failed) if failed else {}
                    found.append(
                        Undelivered(
                            job_id, error.get("type"), error.get("message"), error.get("attempts")
                        )
                    )
        return sorted(found, key=lambda entry: entry.job_id)

    async def redeliver(self, job_ids: list[str]) -> list[str]:
        """Enqueue again the outcome of each of `job_ids` that is undelivered; which were."""
        redis, queue = self.links.redis, self.links.queue
        async with redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(self.links.wait_key(job_id), "result")
            stored = await pipe.execute()
        decided = [(job_id, data) for job_id, data in zip(job_ids, stored, strict=True) if data]
        async with redis.pipeline(transaction=False) as pipe:
            for job_id, data in decided:
                outcome = self.job(json.loads(data))
                keys = [*self._keys(job_id), queue.namespace("queued")]
                args = [queue.serialize(outcome), outcome.scheduled]
                await self._redeliver(keys=keys, args=args, client=pipe)
            done = await pipe.execute()
        return [job_id for (job_id, _data), flag in zip(decided, done, strict=True) if flag]

    async def forget(self, job_id: str) -> bool:
        """Delete the record of a job's delivered or undelivered outcome; whether there was one.

        Raises:
            OutcomePending: the job is still waited for, or its outcome's delivery is queued.
        """
        state = (await self._forget(keys=self._keys(job_id))).decode()
        if state in ("waiting", "queued"):
            doing = "still waited for" if state == "waiting" else "queued for delivery"
            raise OutcomePending(
                f"job {job_id!r}: its outcome is {doing}; forget it once delivered (or"
                " undelivered)",
                job_id=job_id,
            )
        return bool(state != "unknown")

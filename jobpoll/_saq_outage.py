"""`PatientQueue`: the SAQ queue a worker runs on, quiet and idle while its Redis is away.

Left alone, a SAQ worker whose Redis cannot be reached spins: each of its `concurrency` slots
asks Redis for a job, the connection is refused at once, and the slot asks again at once (a
core at 100%, measured); its upkeep tasks (schedule, sweep, worker info) log a traceback each
at every tick. The worker is given this queue instead: the user's, whose dequeue and upkeep
calls, while an outage lasts, wait for the next try (`Outage.retry_at`) and come back empty,
and whose outage is logged once when it begins and once, with its length, when it ends.

A sweep is cut short when an outage begins: it may be waiting for a job it aborts, through
SAQ's listener of job updates, which with Redis away fails and logs in a loop with no pause
(hundreds of tracebacks a second); Redis away, the sweep could do nothing more anyway (a link
it leaves out of the queue is mended, see `_saq_mend`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import OutOfMemoryError
from saq.queue.redis import RedisQueue

from jobpoll._saq_redis import QueueWrapper, outage_of

logger = logging.getLogger("jobpoll")

#: Seconds between two tries while Redis is away: the first times 2 at the first failure,
#: doubled at each, at most the last (a worker is back at work within that of Redis).
FIRST_RETRY, LAST_RETRY = 0.1, 5.0


class Outage:
    """A worker's view of its Redis: reachable, or away since `began` (monotonic seconds).

    While away, the next try is due at `retry_at`: the try's first failure plus
    `min(LAST_RETRY, FIRST_RETRY * 2**failures)` (0.2 s, 0.4 s, ... 5 s), `failures` counting
    tries, not calls: every slot of the worker waits for the same try and may fail in it, so
    a worker makes about `concurrency` calls every `LAST_RETRY` seconds while Redis is away.
    """

    def __init__(
        self,
        queue_name: str,
        told: Callable[[BaseException], str] = repr,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.queue_name = queue_name
        self.told = told  # an error as a log line may quote it
        self.clock = clock
        self.sleep = sleep
        self.began: float | None = None
        self.retry_at = 0.0
        self.failures = 0
        self.full = False  # the outage is a full Redis's (out of memory), not a lost one's
        self.away = asyncio.Event()  # set while an outage lasts

    async def turn(self) -> None:
        """Wait for the next try, if Redis is away."""
        while self.began is not None and (delay := self.retry_at - self.clock()) > 0:
            await self.sleep(delay)

    def failed(self, error: BaseException) -> None:
        """A call failed for want of Redis: an outage begins (logged), or goes on."""
        now = self.clock()
        if self.began is None:
            self.began, self.failures, self.retry_at = now, 0, now
            self.full = isinstance(error, OutOfMemoryError)
            self.away.set()
            logger.warning(
                "Redis of SAQ queue %r is away (%s); this worker waits for it, trying again"
                " every %g s at most",
                self.queue_name,
                self.told(error),
                LAST_RETRY,
            )
        if now >= self.retry_at:  # the try's first failure: the others were in it too
            self.failures += 1
            self.retry_at = now + min(LAST_RETRY, FIRST_RETRY * 2 ** min(self.failures, 16))

    def reached(self, *, wrote: bool) -> None:
        """A call reached Redis (`wrote`: one that writes, whatever it found): an outage, if
        any, is over (logged with its length); a full Redis's only once a write went through
        (reads go on while Redis refuses writes)."""
        if self.began is not None and (wrote or not self.full):
            logger.warning(
                "Redis of SAQ queue %r is back after %.1f s away",
                self.queue_name,
                self.clock() - self.began,
            )
            self.began = None
            self.away.clear()

    async def call(
        self,
        method: Callable[..., Awaitable[Any]],
        *args: Any,
        empty: Any,
        wrote: bool = False,
        **kwargs: Any,
    ) -> Any:
        """`method(*args, **kwargs)` at the next try; `empty` instead when Redis is away.
        `wrote`: whether the method always writes (see `reached`)."""
        await self.turn()
        try:
            value = await method(*args, **kwargs)
        except Exception as exc:
            if not outage_of(exc):
                raise
            self.failed(exc)
            return empty
        self.reached(wrote=wrote)
        return value


class PatientQueue(QueueWrapper):
    """The user's SAQ queue as a worker uses it, patient with an outage of its Redis (see the
    module); any other attribute is the user's queue's."""

    def __init__(self, queue: RedisQueue, outage: Outage) -> None:
        super().__init__(queue)
        self.outage = outage

    async def dequeue(
        self,
        timeout: float = 0.0,  # noqa: ASYNC109 - SAQ's, passed on
        poll_interval: float = 0.0,
    ) -> Any:
        # BLMOVE: a write, refused by a full Redis even with nothing to move.
        dequeue = self.queue.dequeue
        return await self.outage.call(dequeue, timeout, poll_interval, empty=None, wrote=True)

    async def schedule(self, lock: int = 1) -> Any:
        return await self.outage.call(self.queue.schedule, lock, empty=[])

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> Any:
        try:
            return await self.outage.call(self._sweep_unless_away, lock, abort, empty=[])
        except _CutShort:  # no news of Redis, neither way
            return []

    async def _sweep_unless_away(self, lock: int, abort: float) -> Any:
        """The user's queue's sweep, cut short if an outage begins meanwhile (see the module)."""
        sweep = asyncio.ensure_future(self.queue.sweep(lock, abort))
        away = asyncio.ensure_future(self.outage.away.wait())
        try:
            await asyncio.wait([sweep, away], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sweep, away):
                task.cancel()
            await asyncio.gather(sweep, away, return_exceptions=True)
        if sweep.cancelled():
            raise _CutShort
        return sweep.result()

    async def jobs(self, job_keys: Any) -> Any:
        return await self.outage.call(self.queue.jobs, list(job_keys), empty=[])

    async def worker_info(self, *args: Any, **kwargs: Any) -> Any:
        info = self.queue.worker_info  # writes the worker's record
        return await self.outage.call(info, *args, empty=None, wrote=True, **kwargs)


class _CutShort(Exception):
    """A sweep was cut short by an outage (see the module)."""

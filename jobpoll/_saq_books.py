"""`LinkQueue`: the queue a SAQ worker runs jobpoll's jobs on (its poll links, and the
deliveries of outcomes), whose SAQ records of a job's start and end are written by jobpoll's
own scripts for the job, not in round trips of their own.

For every job it runs, SAQ's worker writes the job's record and announces its status when the
job starts (`Queue.update`: `SET`, then `PUBLISH`, two round trips) and when it ends
(`Queue.finish`: a `MULTI` that takes it out of `active` and `incomplete` and keeps its record
for its `ttl`, then `PUBLISH`, two more); a link makes two of its own besides, its begin and
its hand-over (`_saq_links`), and a delivery two, its check that the outcome was not delivered
yet and its note that it was (`_saq_outcomes`). Each round trip costs a worker about as much
CPU as the whole rest of a poll's own bookkeeping: with SAQ's four, a link cost its worker
1.37x to 1.45x the CPU of a bare SAQ job that makes the same GET and enqueues the next one
itself (`benchmarks/bench_queue.py`, medians of three runs; the target is 1.1x).

So for jobpoll's jobs the worker's queue writes neither. As SAQ starts the job, where it
would write the start, the queue runs the job's first script (a link's begin, a delivery's
check, `Start`), which writes the start (`start_of`) before anything else, at once: SAQ's
sweep takes a job in `active` whose record is not active yet for stuck, so the start comes no
later than SAQ's own. What the script found is kept for the job's function (`booked`). The
job's last script (a hand-over, a wait's end, a delivery's note) writes its end (`end_of`),
before anything else too, whatever else the script finds, and the function returns its result
as `Ended`, which tells the queue that the end is written. Any other end (an error, a
timeout, a link superseded, an outcome delivered already, a plain outcome function's, whose
call in its thread may return after its SAQ job ended) is SAQ's, as for any job.

The records are as SAQ writes them: the job's fields as `Queue.update` and `Queue.finish` set
them, in `Queue.serialize`'s JSON (jobpoll's jobs need a queue that writes JSON,
`_saq_scripts.link_maker`), its status announced on its SAQ id's channel. A job run on a
worker with another queue writes neither, and returns its result as it is.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
from saq import Job as SaqJob
from saq.job import Status
from saq.queue.redis import RedisQueue
from saq.utils import now

from jobpoll._saq_redis import QueueWrapper

saq_logger = logging.getLogger("saq")


@attrs.frozen
class Ended:
    """What a job of jobpoll's returns once its script wrote its SAQ end (`end_of`): its
    `result`, which the worker's queue keeps in the job as `Queue.finish` does, writing
    nothing more."""

    result: Any


@attrs.frozen
class SaqRecord:
    """A job's SAQ record as SAQ writes it as the job starts or ends, for a script of
    jobpoll's to write (`_saq_scripts.saq_start`, `saq_end`): its SAQ id, its JSON and, at its
    end, the seconds it is kept (its `ttl`; 0: for good)."""

    saq_id: str
    record: str
    ttl: int = 0

    def arguments(self) -> list[str | int]:
        """As `saq_end` takes them."""
        return [self.record, self.ttl]


#: The arguments of `saq_end` that write nothing.
NO_END: list[str | int] = ["", 0]


def start_of(job: SaqJob) -> SaqRecord:
    """The record SAQ writes as `job` starts (its status active, set by `LinkQueue.update`)."""
    return SaqRecord(job.id, json.dumps(job.to_dict()))


def end_of(job: SaqJob, result: Any) -> SaqRecord | None:
    """The record SAQ writes as `job` ends with `result`, its fields set as `Queue.finish`
    sets them; None when SAQ's own end is needed: `result` is no JSON (SAQ's write fails as
    it would have), or the job's record is deleted at its end (a `ttl` below 0)."""
    if job.ttl < 0:
        return None
    fields = job.to_dict()
    fields.pop("error", None)
    fields.update(status=Status.COMPLETE, result=result, completed=now(), progress=1.0)
    try:
        record = json.dumps(fields)
    except (TypeError, ValueError):
        return None
    return SaqRecord(job.id, record, job.ttl)


def script_end(job: SaqJob | None, result: Any) -> SaqRecord | None:
    """The SAQ end of `job` (None: no job whose start a script wrote, `booked`) as it ends with
    `result`, for its last script to write (`end_of`); None when SAQ's worker writes it: the
    cases of `end_of`, and a job whose queue is no `LinkQueue` any more (SAQ's `Job.refresh`,
    which the user's outcome function may call, puts in the queue that read the record), since
    SAQ's worker ends a job through the job's queue."""
    if job is None or not isinstance(job.queue, LinkQueue):
        return None
    return end_of(job, result)


#: What starts a job of jobpoll's as `LinkQueue.update` would write its start: its first
#: script, which writes it (`start_of`); what it returns is the job's `Started.found`.
Start = Callable[[SaqJob], Awaitable[Any]]


@attrs.frozen
class Started:
    """A job of jobpoll's whose start its first script wrote (`Start`), and what that script
    found, for the job's function to go on from; `at`: when the script was called, on the
    event loop's clock (a link's run is bounded from there, `SaqWaits.poll`)."""

    job: SaqJob
    found: Any
    at: float


def booked(ctx: dict[str, Any]) -> Started | None:
    """The start of the SAQ job a function of jobpoll's runs as (its `ctx`), if the worker's
    queue left it to jobpoll's scripts (`LinkQueue`); else None: the function writes no SAQ
    record, and returns its result as it is. The start is the worker's queue's even if the
    job's queue is another by now (`script_end`)."""
    job: SaqJob | None = ctx.get("job")
    queue: Any = getattr(ctx.get("worker"), "queue", None)
    if job is not None and not isinstance(queue, LinkQueue):
        queue = job.queue
    return queue.started(job) if isinstance(queue, LinkQueue) and job is not None else None


class LinkQueue(QueueWrapper):
    """The worker's queue (`queue`, made of `saq`, the user's, which keeps SAQ's counts): it
    writes no start of a job of jobpoll's (`starts`, by function: each runs the job's first
    script there, at once, where SAQ writes the start) and no end of one that returns `Ended`
    (see the module); any other attribute is `queue`'s."""

    def __init__(self, queue: Any, saq: RedisQueue, starts: Mapping[str, Start]) -> None:
        super().__init__(queue)
        self.saq = saq
        self.starts = dict(starts)
        self._started: dict[int, Started] = {}  # by `id(job)`: a job run twice is two

    async def dequeue(
        self,
        timeout: float = 0.0,  # noqa: ASYNC109 - SAQ's, passed on
        poll_interval: float = 0.0,
    ) -> SaqJob | None:
        job: SaqJob | None = await self.queue.dequeue(timeout, poll_interval)
        if job is not None and job.function in self.starts:
            job.queue = self  # type: ignore[assignment]  # its start and end come here
        return job

    async def update(self, job: SaqJob, **kwargs: Any) -> None:
        """A job's start, as SAQ's worker writes it before it calls the job's function: its
        fields set as `Queue.update` sets them, its record written by its first script, run
        here, at once (a job whose record is not active yet is swept by SAQ as stuck), what
        that found kept for the function (`started`). Any other update is the queue's."""
        start = self.starts.get(job.function)
        if start is None or kwargs != {"status": Status.ACTIVE}:
            await self.saq.update(job, **kwargs)
            return
        job.touched = now()
        job.status = Status.ACTIVE
        at = asyncio.get_running_loop().time()
        self._started[id(job)] = Started(job, await start(job), at)

    def started(self, job: SaqJob) -> Started | None:
        """The start of `job` its first script wrote (None: none), taken. An entry left by
        another job object (one whose processing was cancelled in a `before_process` hook, at
        a shutdown, and whose id Python gave to this one) is not this job's start."""
        started = self._started.pop(id(job), None)
        return started if started is not None and started.job is job else None

    async def retry(self, job: SaqJob, error: str | None) -> None:
        self._started.pop(id(job), None)
        await self.saq.retry(job, error)

    async def finish(
        self,
        job: SaqJob,
        status: Status,
        *,
        result: Any = None,
        error: str | None = None,
        **kwargs: Any,
    ) -> None:
        """A job's end: written by its script if its result is `Ended` (its fields set and
        counted as `Queue.finish` does), else by the queue."""
        self._started.pop(id(job), None)
        if not isinstance(result, Ended) or status != Status.COMPLETE or error is not None:
            await self.saq.finish(job, status, result=result, error=error, **kwargs)
            return
        job.status, job.result, job.error = status, result.result, None
        job.completed, job.progress = now(), 1.0
        self.saq.complete += 1
        if saq_logger.isEnabledFor(logging.INFO):
            saq_logger.info("Finished %s", job.info(saq_logger.isEnabledFor(logging.DEBUG)))

"""SAQ's records of jobpoll's own jobs (`_saq_books`) against what a worker and its user may do
to a job as SAQ lets them: real Redis, a real SAQ worker in the test's loop."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

if not __import__("os").environ.get("CI"):
    pytest.importorskip("saq", reason="the saq extra is not installed (pip install '.[saq]')")

from saq import Job as SaqJob
from saq import Queue
from saq.job import Status
from saq_worker import TEST_POLICY
from test_saq import delivered_once, eventually
from test_saq import service as live_service
from test_saq_outcomes import worker_in_this_loop

from jobpoll._saq_books import LinkQueue, booked, script_end
from jobpoll._saq_outcomes import outcome_key
from jobpoll.saq import POLL_FUNCTION, SaqWaits
from jobpoll.testing import FakeJobsService

pytestmark = pytest.mark.timeout(120)

service = live_service


async def kept(ctx: dict[str, Any], *, result: dict[str, Any]) -> None:
    """An outcome function that keeps nothing."""


async def test_an_outcome_function_that_refreshes_its_job_ends_it_complete(
    redis_url: str, service: FakeJobsService, caplog: pytest.LogCaptureFixture
) -> None:
    """An outcome function that refreshes its SAQ job (`Job.refresh`, SAQ's own API: it reads
    the job's record, its queue with it) is delivered once and its job ends complete with what
    it returned, no error logged, none failed."""
    job_id = service.add_job(duration=0.2, final_status="FINISHED")
    queue = Queue.from_url(redis_url, name="t" + uuid.uuid4().hex[:8])
    waits = SaqWaits(queue, on_outcome="fresh", policy=TEST_POLICY, outcome_retries=1)

    async def fresh(ctx: dict[str, Any], *, result: dict[str, Any]) -> dict[str, Any]:
        await ctx["job"].refresh()
        return {"kept": result["jobId"]}

    with caplog.at_level(logging.INFO, logger="saq"):
        async with worker_in_this_loop(waits, service, ("fresh", fresh)) as worker:
            assert await waits.submit([job_id]) == [True]
            await eventually(lambda: delivered_once(waits, 1), "the outcome delivered")

            async def ended() -> bool:
                job = await queue.job(outcome_key(job_id))
                return job is not None and job.status in ("complete", "failed")

            await eventually(ended, "the delivery's job ended")
            delivery = await queue.job(outcome_key(job_id))
            failed = worker.queue.failed
    assert delivery is not None
    assert (delivery.status, delivery.result, delivery.error) == (
        "complete",
        {"kept": job_id},
        None,
    )
    assert failed == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_start_is_found_when_the_jobs_queue_was_replaced(redis_url: str) -> None:
    """A job whose queue was replaced after its start (SAQ's `Job.refresh` in a worker's
    `before_process`, say): its function finds its start all the same, from the worker's
    queue, and writes no SAQ end of its own: SAQ's worker writes it, through the job's
    queue."""
    queue = Queue.from_url(redis_url, name="t" + uuid.uuid4().hex[:8])
    found: list[SaqJob] = []

    async def start(job: SaqJob) -> str:
        found.append(job)
        return "found"

    books = LinkQueue(queue, queue, {"mine": start})
    try:
        job = SaqJob("mine", queue=queue)
        job.queue = books  # type: ignore[assignment]  # as `LinkQueue.dequeue` does
        await job.update(status=Status.ACTIVE)
        assert found == [job]
        job.queue = queue  # as `Job.refresh` does
        started = booked({"worker": SimpleNamespace(queue=books), "job": job})
        assert started is not None
        assert (started.job, started.found) == (job, "found")
        assert books.started(job) is None  # taken
        assert script_end(job, "done") is None
        job.queue = books  # type: ignore[assignment]
        assert script_end(job, "done") is not None
    finally:
        await queue.disconnect()


async def test_a_users_own_function_on_the_same_worker_is_saqs_alone(
    redis_url: str, service: FakeJobsService
) -> None:
    """A user's own SAQ function on a worker of jobpoll's: its job is run on the user's queue
    itself, and ended by SAQ as on any worker (complete, its result, kept for its `ttl`,
    counted once)."""
    queue = Queue.from_url(redis_url, name="t" + uuid.uuid4().hex[:8])
    waits = SaqWaits(queue, on_outcome="kept", policy=TEST_POLICY)
    seen: list[Any] = []

    async def own(ctx: dict[str, Any], *, n: int) -> int:
        seen.append(ctx["job"].queue)
        return n + 1

    async with worker_in_this_loop(waits, service, ("kept", kept)) as worker:
        worker.functions["own"] = own
        job = await queue.enqueue("own", n=41, ttl=300)
        assert job is not None
        await job.refresh(until_complete=30)
        ttl = await queue.redis.ttl(job.id)
        complete = worker.queue.complete
    assert seen == [queue]
    assert (job.status, job.result, job.error, job.progress) == ("complete", 42, None, 1.0)
    assert 0 < ttl <= 300
    assert complete == 1


async def test_a_link_whose_begin_is_older_than_poll_timeout_polls_nothing(
    redis_url: str, service: FakeJobsService
) -> None:
    """A link whose function is called more than `poll_timeout` after its begin (here a
    worker's `before_process` hook that takes that long) is cut short before it polls: the
    rescue hands a link on `poll_timeout` and a lease after its begin, so a poll sent later
    could race the link's next run. SAQ runs the link again, and that run polls."""
    job_id = service.add_job(duration=math.inf)
    queue = Queue.from_url(redis_url, name="t" + uuid.uuid4().hex[:8])
    waits = SaqWaits(queue, on_outcome=None, policy=TEST_POLICY, poll_timeout=1.0)
    seen_by_hook: list[int] = []

    async def slow_first(ctx: dict[str, Any]) -> None:
        seen_by_hook.append(service.request_count(job_id))
        if len(seen_by_hook) == 1:
            await asyncio.sleep(1.5)

    async with worker_in_this_loop(waits, service, ("kept", kept)) as worker:
        worker.before_process = [slow_first]
        assert await waits.submit([job_id]) == [True]
        await eventually(lambda: service.request_count(job_id) >= 1, "a poll")
    assert len(seen_by_hook) >= 2
    assert seen_by_hook[:2] == [0, 0]  # the first run sent nothing


async def test_a_link_whose_begin_is_older_than_poll_timeout_polls_nothing_on_a_kept_connection(
    redis_url: str, service: FakeJobsService
) -> None:
    """As above, for a link after the wait's first polls, whose worker's client holds a
    connection to the service already: its run, cut short as it starts, sends no poll (a
    request whose bytes leave before the first await that waits would race the link's next
    run all the same)."""
    job_id = service.add_job(duration=math.inf)
    queue = Queue.from_url(redis_url, name="t" + uuid.uuid4().hex[:8])
    waits = SaqWaits(queue, on_outcome=None, policy=TEST_POLICY, poll_timeout=1.0)
    seen_by_hook: list[tuple[int, int]] = []  # (step, requests so far) as each run starts

    async def slow_third(ctx: dict[str, Any]) -> None:
        job = ctx["job"]
        if job.function != POLL_FUNCTION:
            return
        step = job.kwargs["step"]
        seen_by_hook.append((step, service.request_count(job_id)))
        if step == 2 and [s for s, _ in seen_by_hook].count(2) == 1:
            await asyncio.sleep(1.5)

    async with worker_in_this_loop(waits, service, ("kept", kept)) as worker:
        worker.before_process = [slow_third]
        assert await waits.submit([job_id]) == [True]
        await eventually(lambda: service.request_count(job_id) >= 4, "four polls")
    runs_of_2 = [count for step, count in seen_by_hook if step == 2]
    assert runs_of_2[0] == 2  # two polls (steps 0 and 1) before it: a connection kept
    assert runs_of_2[:2] == [2, 2]  # the run cut short sent nothing

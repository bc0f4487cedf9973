"""Outcome delivery on SAQ: a blocking plain outcome function, outcomes that could not be
delivered (listed, delivered again, forgotten), and what a worker logs. Real Redis, real
worker processes (and one worker in the test's own loop, for its logs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

if not __import__("os").environ.get("CI"):
    pytest.importorskip("saq", reason="the saq extra is not installed (pip install '.[saq]')")

from saq import Job as SaqJob
from saq import Queue, Worker
from saq_worker import TEST_POLICY, make_waits
from support import RedisServer
from test_saq import delivered_once, eventually, fleet_of
from test_saq import service as live_service

from jobpoll import JobsClient
from jobpoll._saq_links import Links
from jobpoll._saq_logs import SaqLines
from jobpoll._saq_outcomes import Outcomes, outcome_key
from jobpoll.saq import POLL_FUNCTION, OutcomePending, SaqWaits, Undelivered
from jobpoll.testing import FakeJobsService

pytestmark = pytest.mark.timeout(180)

#: The fake service in real time (not conftest's, in virtual time): the workers are other
#: processes.
service = live_service


async def test_a_blocking_plain_outcome_function_stalls_no_poll(
    redis_url: str, service: FakeJobsService
) -> None:
    """A plain `def` outcome function blocking in `time.sleep` runs off the worker's event
    loop: while it blocks, the worker goes on polling its other waits (each polled three times
    more), and each outcome is delivered once."""
    first = service.add_job(duration=0.5, final_status="FINISHED")
    running = [service.add_job(duration=math.inf) for _ in range(3)]
    async with fleet_of(redis_url, service, 1, outcome="blocking_outcome") as fleet:
        hold, blocked = (f"test:{fleet.queue_name}:{name}" for name in ("hold", "blocked"))
        await fleet.redis.set(hold, 1)
        assert all(await fleet.waits.submit([first, *running]))
        await eventually(lambda: fleet.redis.llen(blocked), "the outcome function blocking")
        polls = {job_id: service.request_count(job_id) for job_id in running}
        await eventually(
            lambda: all(service.request_count(j) >= polls[j] + 3 for j in running),
            "polls while the outcome function blocks",
        )
        assert await fleet.outcomes() == {}  # it was blocking all along
        await fleet.redis.delete(hold)
        for job_id in running:
            service.set_job(job_id, status="FINISHED", progress=100)
        await eventually(lambda: delivered_once(fleet.waits, 4), "every outcome delivered")
        calls = await fleet.calls()
        outcomes = await fleet.outcomes()
    assert sorted(job_id for job_id, _attempt in calls) == sorted([first, *running])
    assert set(outcomes) == {first, *running}


async def test_outcomes_that_fail_are_listed_redelivered_and_forgotten(
    redis_url: str, service: FakeJobsService
) -> None:
    """An outcome function that raises at every call: once SAQ's retries are spent, each
    outcome is listed by `undelivered()` with the last error (the key hidden), none counted
    delivered; `redeliver()` enqueues them again and they are delivered, once. A delivered
    outcome can be forgotten and its id waited on again; a live wait cannot be forgotten."""
    job_ids = sorted(service.add_job(duration=0.5, final_status="FINISHED") for _ in range(2))
    async with fleet_of(redis_url, service, 1, outcome="failing_outcome") as fleet:
        waits, name = fleet.waits, fleet.queue_name
        await fleet.redis.set(f"test:{name}:fail", f"database down ({service.api_key})")
        assert all(await waits.submit(job_ids))

        async def both_listed() -> bool:
            return len(await waits.undelivered()) == 2

        await eventually(both_listed, "both outcomes undelivered", within=90)
        listed = await waits.undelivered()
        assert await fleet.redis.llen(f"test:{name}:failed") == 6  # outcome_retries=3 each
        assert await waits.delivered() == 0
        assert await waits.redeliver(["never-submitted"]) == []
        await fleet.redis.delete(f"test:{name}:fail")
        assert await waits.redeliver() == job_ids
        await eventually(lambda: delivered_once(fleet.waits, 2), "both delivered")
        assert await waits.undelivered() == []
        assert await waits.redeliver(job_ids) == []  # delivered: nothing to do
        assert await waits.submit(job_ids) == [False, False]  # their outcomes are kept

        assert await waits.forget(job_ids[0]) is True
        assert await waits.forget(job_ids[0]) is False  # nothing kept any more
        assert await waits.submit(job_ids) == [True, False]
        await eventually(lambda: delivered_once(fleet.waits, 3), "the new wait's outcome")

        live = service.add_job(duration=math.inf)
        assert await waits.submit([live]) == [True]
        with pytest.raises(OutcomePending, match="still waited for"):
            await waits.forget(live)
        calls = await fleet.calls()
    assert [entry.job_id for entry in listed] == job_ids
    for entry in listed:
        assert entry.error_type == "RuntimeError"
        assert entry.error_message is not None
        assert entry.error_message.startswith("cannot store the outcome: database down (")
        assert service.api_key not in entry.error_message
        assert "<redacted>" in entry.error_message
        assert entry.attempts == 3
    assert sorted(job_id for job_id, _attempt in calls) == sorted([*job_ids, job_ids[0]])


def waits_on(redis_url: str, outcome: str, *, retries: int, timeout: float = 1.0) -> SaqWaits:
    """Waits on a queue of their own, `outcome` (tried `retries` times, each for `timeout`
    seconds) their outcome function."""
    queue = Queue.from_url(redis_url, name="t" + uuid.uuid4().hex[:8])
    return SaqWaits(
        queue,
        on_outcome=outcome,
        policy=TEST_POLICY,
        outcome_timeout=timeout,
        outcome_retries=retries,
    )


@contextlib.asynccontextmanager
async def worker_in_this_loop(
    waits: SaqWaits, service: FakeJobsService, outcome: tuple[str, Any], **options: Any
) -> AsyncIterator[Worker]:
    """A SAQ worker of `waits` in the test's own event loop (for its logs), with `outcome`
    (name, function) as its outcome function and SAQ's other `options`; stopped at the end,
    if the test did not."""
    worker = Worker(
        **waits.worker_settings(
            client=lambda: JobsClient(service.api_key, base_url=service.base_url),
            functions=[outcome],
            concurrency=10,
            timers={"schedule": 1, "worker_info": 5},
            **options,
        )
    )
    running = asyncio.create_task(worker.start())
    try:
        yield worker
    finally:
        await worker.stop()
        await running
        await waits.queue.disconnect()


async def test_a_call_that_returns_as_redis_goes_away_is_not_made_again(
    service: FakeJobsService,
) -> None:
    """An outcome function whose call returns just as Redis goes away (stopped, started again
    a second later, its data kept): the return is written down once Redis is back, so the
    function is not called again by SAQ's retry, and the delivery is counted once."""
    job_id = service.add_job(duration=0.5, final_status="FINISHED")
    calls: list[str] = []
    restarts: list[asyncio.Task[None]] = []
    with RedisServer("--appendonly", "yes") as server:

        async def restart() -> None:
            await asyncio.sleep(1.0)
            await asyncio.to_thread(server.start)

        async def stopping(ctx: dict[str, Any], *, result: dict[str, Any]) -> None:
            calls.append(result["jobId"])
            if len(calls) == 1:
                await asyncio.to_thread(server.stop)
                restarts.append(asyncio.create_task(restart()))

        waits = make_waits(server.url, "r" + uuid.uuid4().hex[:8], 30.0, outcome="stopping")
        async with worker_in_this_loop(waits, service, ("stopping", stopping)):
            assert all(await waits.submit([job_id]))
            await eventually(lambda: len(restarts) == 1, "the call that stops Redis")
            await restarts[0]
            await eventually(lambda: delivered_once(waits, 1), "the delivery counted")
    assert calls == [job_id]


async def test_a_plain_outcome_function_that_takes_too_long_is_called_once(
    redis_url: str, service: FakeJobsService
) -> None:
    """A plain outcome function slower than `outcome_timeout`: SAQ's retries wait for the call
    still running instead of calling it again, the outcome is listed undelivered with a
    `TimeoutError` that says so, a redelivery in the same worker waits for that call too, and
    when it returns at last the outcome is delivered: one call in all."""
    job_id = service.add_job(duration=0.5, final_status="FINISHED")
    waits = waits_on(redis_url, "slow", retries=2)
    queue = waits.queue
    release = threading.Event()
    calls: list[str] = []

    def slow(ctx: dict[str, Any], *, result: dict[str, Any]) -> None:
        calls.append(result["jobId"])
        release.wait(60)  # blocks its thread until the test has seen it listed

    async with worker_in_this_loop(waits, service, ("slow", slow)):
        try:
            assert await waits.submit([job_id]) == [True]

            async def listed() -> bool:
                return bool(await waits.undelivered())

            await eventually(listed, "the outcome undelivered")
            assert calls == [job_id]  # the retry waited for the first call
            assert await waits.undelivered() == [
                Undelivered(
                    job_id,
                    "TimeoutError",
                    "did not return within 1 s (it runs on in its thread: delivered if it returns)",
                    2,
                )
            ]
            assert await waits.delivered() == 0
            assert await waits.redeliver() == [job_id]
            await eventually(lambda: queue.count("incomplete"), "the redelivery queued")
        finally:
            release.set()
        await eventually(lambda: delivered_once(waits, 1), "the late call delivered")
        assert await waits.undelivered() == []
    assert calls == [job_id]


async def test_a_redelivery_started_as_the_running_call_returns_calls_nothing_again(
    redis_url: str, service: FakeJobsService, caplog: pytest.LogCaptureFixture
) -> None:
    """A redelivery of an outcome whose plain call still runs, started just before that call
    returns (it found the outcome undelivered), and reaching the function only after: the call
    has been delivered meanwhile, so it calls nothing again. (The worker's `before_process`
    hook holds it there; on a busy machine, the time SAQ takes between the two does.)"""
    caplog.set_level(logging.INFO, logger="jobpoll")
    job_id = service.add_job(duration=0.5, final_status="FINISHED")
    waits = waits_on(redis_url, "slow", retries=1)
    queue = waits.queue
    release = threading.Event()
    calls: list[str] = []
    started: list[str] = []

    def slow(ctx: dict[str, Any], *, result: dict[str, Any]) -> None:
        calls.append(result["jobId"])
        release.wait(60)

    async def before_process(ctx: dict[str, Any]) -> None:
        if ctx["job"].function != "slow":
            return
        started.append(ctx["job"].id)
        if len(started) == 2:  # the redelivery, started: the running call returns now
            release.set()
            await eventually(lambda: delivered_once(waits, 1), "the running call delivered")

    async with worker_in_this_loop(waits, service, ("slow", slow), before_process=before_process):
        try:
            assert await waits.submit([job_id]) == [True]

            async def listed() -> bool:
                return bool(await waits.undelivered())

            await eventually(listed, "the outcome undelivered")
            assert await waits.redeliver() == [job_id]

            async def redelivered() -> bool:
                return len(started) == 2 and await queue.count("incomplete") == 0

            await eventually(redelivered, "the redelivery run")
        finally:
            release.set()
        assert await waits.delivered() == 1
    assert calls == [job_id]
    assert f"job {job_id}: outcome already delivered, not again" in caplog.messages


async def test_a_call_that_waited_for_a_thread_is_not_made_once_another_worker_delivered(
    redis_url: str,
) -> None:
    """A plain call that waits in one worker for a free thread (its only one runs a call that
    has not returned), past its SAQ job's timeout, while another worker's call of the same
    outcome returns: once the thread is free, the outcome is delivered, and the waiting call
    is not made."""
    name = "t" + uuid.uuid4().hex[:8]
    workers = [
        Outcomes(
            links=Links(
                queue=Queue.from_url(redis_url, name=name), poll_timeout=30.0, outcome_ttl=60.0
            ),
            function="f",
            retries=1,
            timeout=1.0,
        )
        for _ in range(2)
    ]
    for outcomes in workers:
        outcomes.start(threads=1)
    one, other = workers
    release = threading.Event()
    calls: list[str] = []

    def f(ctx: dict[str, Any], *, result: dict[str, Any]) -> str:
        calls.append(result["jobId"])
        if result["jobId"] == "hog":
            release.wait(60)
        return "ok"

    try:
        for job_id in ("hog", "Y"):  # two waits ended, their outcomes to deliver
            await one.links.redis.hset(one.links.wait_key(job_id), "result", "{}")
        first, second = one.once(f), other.once(f)
        with pytest.raises(TimeoutError):
            await first({}, result={"jobId": "hog"})
        with pytest.raises(TimeoutError):
            await first({}, result={"jobId": "Y"})
        assert await one.links.redis.hget(one.links.wait_key("Y"), "failed") is not None
        assert await second({}, result={"jobId": "Y"}) == "ok"
        release.set()
        threads = one.threads
        assert threads is not None
        await eventually(lambda: not threads.tasks(), "the first worker's calls over")
        assert calls == ["hog", "Y"]
        assert await one.delivered() == 2
        assert await one.links.redis.hget(one.links.wait_key("Y"), "failed") is None
    finally:
        release.set()
        for outcomes in workers:
            await outcomes.links.queue.disconnect()


async def test_an_async_call_that_returns_as_redis_pauses_writes_is_not_made_again(
    redis_url: str, service: FakeJobsService
) -> None:
    """An `async def` outcome function whose return cannot be written down within its
    `outcome_timeout` (Redis holds writes for 2.5 s as it returns): the return is written once
    Redis takes writes again, not cut by the timeout (which bounds the call only), so SAQ does
    not call the function again."""
    job_id = service.add_job(duration=0.5, final_status="FINISHED")
    waits = waits_on(redis_url, "ended", retries=3)
    queue = waits.queue
    calls: list[str] = []

    async def ended(ctx: dict[str, Any], *, result: dict[str, Any]) -> str:
        calls.append(result["jobId"])
        await queue.redis.execute_command("CLIENT", "PAUSE", 2500, "WRITE")
        return "ok"

    async with worker_in_this_loop(waits, service, ("ended", ended)):
        assert await waits.submit([job_id]) == [True]
        await eventually(lambda: delivered_once(waits, 1), "the outcome delivered")
        await asyncio.sleep(3.0)  # SAQ would have retried a call it took for timed out by now
        assert await waits.undelivered() == []
        assert await waits.delivered() == 1
    assert calls == [job_id]


async def test_an_aborted_async_call_is_cancelled_and_not_delivered(
    redis_url: str, service: FakeJobsService
) -> None:
    """An `async def` outcome call whose SAQ job an operator aborts is cancelled there, as any
    SAQ job is (its return would be written down beyond `outcome_timeout`, but the call itself
    is not shielded from its job): the job stays aborted, the outcome undelivered."""
    job_id = service.add_job(duration=0.3, final_status="FINISHED")
    waits = waits_on(redis_url, "slow", retries=1, timeout=30.0)
    queue = waits.queue
    events: list[str] = []
    aborts: list[asyncio.Task[None]] = []

    async def slow(ctx: dict[str, Any], *, result: dict[str, Any]) -> str:
        events.append("start")
        try:
            await asyncio.sleep(20)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        events.append("returned")
        return "ok"

    async def before_process(ctx: dict[str, Any]) -> None:
        job = ctx["job"]
        if job.function == "slow":

            async def abort() -> None:
                await eventually(lambda: events == ["start"], "the call started")
                await job.abort("stopped by an operator")

            aborts.append(asyncio.create_task(abort()))

    async with worker_in_this_loop(waits, service, ("slow", slow), before_process=before_process):
        assert await waits.submit([job_id]) == [True]
        await eventually(lambda: events == ["start", "cancelled"], "the call cancelled")
        await asyncio.gather(*aborts)

        async def aborted() -> bool:  # "aborting" first, then the worker's "aborted"
            record = await queue.job(outcome_key(job_id))
            return record is not None and record.status == "aborted"

        await eventually(aborted, "the job aborted")
        assert await waits.delivered() == 0
    assert events == ["start", "cancelled"]


async def test_plain_outcome_calls_that_never_return_hold_no_other_call_nor_the_stop(
    redis_url: str, service: FakeJobsService
) -> None:
    """Two outcomes whose plain function hangs, with three tries each: one call each (the
    retries wait for it), listed undelivered; a third outcome meanwhile is delivered at once.
    The worker stops while the two calls still run (neither its loop nor its stop waits for
    them), and a call that returns after the stop changes nothing."""
    hanging = [service.add_job(duration=0.5, final_status="FINISHED") for _ in range(2)]
    quick = service.add_job(duration=0.5, final_status="FINISHED")
    waits = waits_on(redis_url, "hangs", retries=3)
    release = threading.Event()
    calls: list[str] = []
    returned: list[str] = []

    def hangs(ctx: dict[str, Any], *, result: dict[str, Any]) -> None:
        calls.append(result["jobId"])
        if result["jobId"] in hanging:
            release.wait(60)
        returned.append(result["jobId"])

    async with worker_in_this_loop(waits, service, ("hangs", hangs)) as worker:
        try:
            assert all(await waits.submit([*hanging, quick]))

            async def both_listed() -> bool:
                return len(await waits.undelivered()) == 2

            await eventually(both_listed, "the hanging outcomes undelivered", within=90)
            assert [entry.job_id for entry in await waits.undelivered()] == sorted(hanging)
            assert all(entry.attempts == 3 for entry in await waits.undelivered())
            assert await waits.delivered() == 1  # the quick one
            await worker.stop()
            assert returned == [quick]  # the stop did not wait for the hanging calls
        finally:
            release.set()
    assert sorted(calls) == sorted([*hanging, quick])


async def test_a_cancelled_worker_stop_is_cancelled_and_closes_all(
    redis_url: str, service: FakeJobsService
) -> None:
    """A worker's shutdown cancelled while it waits for its own tasks to end: the
    cancellation is raised, not swallowed, once the client is closed and the log filter gone."""
    queue = Queue.from_url(redis_url, name="t" + uuid.uuid4().hex[:8])
    waits = SaqWaits(queue, on_outcome=None, policy=TEST_POLICY)
    clients: list[JobsClient] = []

    def client() -> JobsClient:
        clients.append(JobsClient(service.api_key, base_url=service.base_url))
        return clients[-1]

    settings = waits.worker_settings(client=client)
    ctx = Worker(**settings).context
    try:
        await settings["startup"](ctx)
        closing = asyncio.create_task(settings["shutdown"](ctx))
        await asyncio.sleep(0)  # it runs until it waits for its mending task to end
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
    finally:
        await queue.disconnect()
    assert "closed" in repr(clients[0])
    assert not logging.getLogger("saq").filters


async def test_a_worker_logs_each_wait_once_and_no_bodies(
    redis_url: str, service: FakeJobsService, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker's log at INFO: one line per wait started and one per wait ended (with its
    outcome, polls and time), none per poll, and no job's kwargs anywhere, not even in SAQ's
    line about an outcome function that raised. An `async def` outcome function runs on the
    event loop."""
    caplog.set_level(logging.INFO)
    user = "only-in-the-body-7f3a"
    # Running until each has been polled three times, then finished by the test.
    job_ids = [service.add_job(duration=math.inf, user=user) for _ in range(4)]
    waits = make_waits(redis_url, "l" + uuid.uuid4().hex[:8], 30.0, outcome="flaky")
    calls: list[tuple[str, bool]] = []

    async def flaky(ctx: dict[str, Any], *, result: dict[str, Any]) -> None:
        calls.append((result["jobId"], threading.current_thread() is threading.main_thread()))
        if ctx["job"].attempts == 1:
            raise RuntimeError("not yet")

    async with worker_in_this_loop(waits, service, ("flaky", flaky)):
        assert all(await waits.submit(job_ids))
        await eventually(
            lambda: all(service.request_count(job_id) >= 3 for job_id in job_ids),
            "three polls of each job",
        )
        for job_id in job_ids:
            service.set_job(job_id, status="FINISHED", progress=100)
        async with asyncio.timeout(60):
            ended = [result async for result in waits.results(job_ids)]
        await eventually(lambda: delivered_once(waits, len(job_ids)), "all delivered")
    assert all(result.ok for result in ended)
    assert sorted(calls) == sorted((job_id, True) for job_id in job_ids for _ in range(2))

    lines = [(record.name, record.levelno, record.getMessage()) for record in caplog.records]
    ours = [text for name, _level, text in lines if name == "jobpoll"]
    assert sorted(t for t in ours if "wait started" in t) == sorted(
        f"job {job_id}: wait started" for job_id in job_ids
    )
    done = [t for t in ours if "wait ended" in t]
    assert len(done) == len(job_ids)
    for job_id in job_ids:
        assert any(t.startswith(f"job {job_id}: wait ended, ok (FINISHED), ") for t in done)
    per_poll = ("Processing ", "Finished ", "Scheduled ")
    saq_info = [text for name, level, text in lines if name == "saq" and level <= logging.INFO]
    assert [t for t in saq_info if t.startswith(per_poll)]  # SAQ's lines about outcome jobs
    links = [re.compile(f"jobpoll:{re.escape(job_id)}:[0-9]") for job_id in job_ids]
    for text in saq_info:
        assert not (text.startswith(per_poll) and any(link.search(text) for link in links)), text
    failed = [text for name, level, text in lines if name == "saq" and level == logging.ERROR]
    assert len(failed) == len(job_ids)
    assert all("function: flaky, key: jobpoll:" in text for text in failed)
    assert all(text.partition(", attempts")[0].endswith(":outcome") for text in failed)
    assert user not in caplog.text
    assert "kwargs" not in caplog.text
    assert not logging.getLogger("saq").filters  # the worker's filter went with it


def test_saq_lines_about_jobpoll_jobs_are_short() -> None:
    """SAQ's lines about a link or an outcome job name it by function, key, attempts and
    status; its per-poll lines about links are dropped (unless SAQ's logger is at DEBUG); the
    kwargs of a job's full description (SAQ's DEBUG) are cut; other jobs' lines are as SAQ
    wrote them."""
    lines = SaqLines(["job_ended"])
    checkpoint = {"job_id": "j", "step": 3, "checkpoint": {"job": {"user": "secret-user"}}}
    link = SaqJob(function=POLL_FUNCTION, kwargs=checkpoint, key="jobpoll:j:3", attempts=2)
    outcome = SaqJob(function="job_ended", kwargs={"result": {"user": "secret-user"}})
    other = SaqJob(function="mine", kwargs={"x": 1})

    def shown(message: str, *args: Any, level: int = logging.INFO) -> str | None:
        record = logging.LogRecord("saq", level, __file__, 1, message, args, None)
        return record.getMessage() if lines.filter(record) else None

    error = shown("Error processing job %s", link, level=logging.ERROR)
    assert error == (
        "Error processing job Job<function: jobpoll.poll, key: jobpoll:j:3, attempts: 2,"
        " status: new>"
    )
    assert "secret-user" not in str(shown("Error processing job %s", outcome))
    assert shown("Error processing job %s", other) == f"Error processing job {other!r}"
    assert shown("Processing %s", link.info()) is None
    assert shown("Finished %s", link.info()) is None
    assert shown("Scheduled %s", ["saq:job:q:jobpoll:j:3", "saq:job:q:jobpoll:k:1"]) is None
    mixed = ["saq:job:q:jobpoll:j:3", "saq:job:q:mine"]
    assert shown("Scheduled %s", mixed) == "Scheduled ['saq:job:q:mine']"
    assert shown("Processing %s", outcome.info()) == f"Processing {outcome.info()}"
    full = shown("Retrying %s", link.info(full=True))
    assert full is not None
    assert "secret-user" not in full
    assert (
        full == "Retrying Job<function: jobpoll.poll, kwargs: {...}, key: jobpoll:j:3, attempts: 2>"
    )


def test_no_outcome_job_shares_a_key_with_a_poll_link() -> None:
    """Job ids are any printable text: the outcome of job `7` and link 7 of job `outcome` (or
    of `outcome:7`, whose link keys end in a number too) are kept under distinct keys."""
    from saq import Queue

    links = Links(
        queue=Queue.from_url("redis://127.0.0.1:1", name="k"), poll_timeout=30.0, outcome_ttl=60.0
    )
    ids = ["7", "outcome", "outcome:7", "a:1", "1"]
    outcomes = {links.queue.job_id(outcome_key(job_id)) for job_id in ids}
    link_ids = {links.link_id(job_id, step) for job_id in ids for step in range(12)}
    assert len(outcomes) == len(ids)
    assert not outcomes & link_ids


@pytest.mark.parametrize("plain", [False, True], ids=["async", "plain"])
async def test_saq_keeps_its_records_of_jobpolls_jobs_as_of_any_job(
    redis_url: str, service: FakeJobsService, plain: bool
) -> None:
    """A worker's poll links and outcome deliveries, whose SAQ records jobpoll's own scripts
    write: once run, each is out of SAQ's `active` and `incomplete`, its record complete with
    what the function returned, kept for its `ttl`, and counted by the worker as complete, as
    SAQ keeps any job's (a plain function's delivery is ended by SAQ itself)."""
    job_id = service.add_job(duration=1.5, final_status="FINISHED")
    queue = Queue.from_url(redis_url, name="t" + uuid.uuid4().hex[:8])
    waits = SaqWaits(queue, on_outcome="kept", policy=TEST_POLICY)

    async def kept_async(ctx: dict[str, Any], *, result: dict[str, Any]) -> dict[str, Any]:
        return {"kept": result["jobId"]}

    def kept_plain(ctx: dict[str, Any], *, result: dict[str, Any]) -> dict[str, Any]:
        return {"kept": result["jobId"]}

    kept = kept_plain if plain else kept_async
    async with worker_in_this_loop(waits, service, ("kept", kept)) as worker:
        assert await waits.submit([job_id]) == [True]
        await eventually(lambda: delivered_once(waits, 1), "the outcome delivered")

        async def all_ended() -> bool:
            return await queue.count("active") + await queue.count("incomplete") == 0

        await eventually(all_ended, "every job ended")
        links = [f"jobpoll:{job_id}:{step}" for step in range(10)]
        records = [job for job in await queue.jobs(links) if job is not None]
        delivery = await queue.job(outcome_key(job_id))
        ttls = [await queue.redis.ttl(job.id) for job in [*records, delivery] if job]
        complete = worker.queue.complete
    assert len(records) >= 3  # it polled three times at least: the job ran 1.5 s
    # A link dequeued as the worker starts may be swept by SAQ's first sweep, which takes a
    # job not marked active yet for stuck (as SAQ does any job), and run again: superseded.
    results = [link.result for link in records]
    assert results[-1] == "over"
    assert "polled" in results
    assert set(results[:-1]) <= {"polled", "superseded"}
    assert delivery is not None
    assert delivery.result == {"kept": job_id}
    for job in [*records, delivery]:
        assert (job.status, job.error, job.progress) == ("complete", None, 1.0)
        assert job.completed >= job.started > 0
    assert all(0 < ttl <= 10 for ttl in ttls[:-1])  # `LINK_TTL`
    assert 500 < ttls[-1] <= 600
    assert complete >= len(records) + 1  # each run of a job counted, once

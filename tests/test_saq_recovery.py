"""A SAQ fleet's waits after faults: workers killed (their polls handed on by the others, all
at once), a wait lost in the queue past its deadline (its deadline leaves the lost time out),
a worker whose wall clock is a minute off (Redis's clock rules). Real Redis, real workers."""

from __future__ import annotations

import asyncio
import math
import signal
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("saq", reason="the saq extra is not installed (pip install '.[saq]')")

import saq.queue.redis
from redis.exceptions import OutOfMemoryError
from saq import Queue
from test_saq import Fleet, delivered_once, eventually, fleet_of
from test_saq import service as live_service

from jobpoll import WaitTimeout
from jobpoll._saq_books import end_of
from jobpoll._saq_links import Links
from jobpoll._saq_poll import LOST_AFTER
from jobpoll._saq_rate import FleetRate
from jobpoll._saq_rescue import LEASE, Active, ActiveLink, Rescue
from jobpoll.saq import load_result
from jobpoll.testing import FakeJobsService

pytestmark = pytest.mark.timeout(180)

#: The fake service in real time (the workers are other processes).
service = live_service


@pytest.fixture
async def slow_service() -> AsyncIterator[FakeJobsService]:
    """Every answer after 0.5 s, as over a network: a worker always has polls in flight."""
    async with FakeJobsService(latency=0.5) as fake:
        yield fake


def _link(
    live: bool = True, runner: str | None = "a", begun: float | None = 100.0, alive: bool = True
) -> ActiveLink:
    return ActiveLink("saq:job:q:jobpoll:j:1", b"{}", "j", 1, {}, live, runner, begun, alive, False)


@pytest.mark.parametrize(
    ("link", "now", "first_seen", "stale"),
    [
        pytest.param(_link(), 110.0, None, False, id="running"),
        pytest.param(_link(alive=False), 110.0, None, True, id="its-worker-gone"),
        pytest.param(_link(), 100.0 + 30 + LEASE + 1, None, True, id="overdue"),
        pytest.param(_link(runner=None, begun=None), 110.0, None, False, id="unbegun-new"),
        pytest.param(_link(runner=None, begun=None), 110.0, 105.0, False, id="unbegun"),
        pytest.param(_link(runner=None, begun=None), 110.0, 110 - LEASE, True, id="unbegun-long"),
        pytest.param(_link(live=False, runner=None), 110.0, 109.0, False, id="ended"),
        pytest.param(_link(live=False, runner=None), 110.0, 110 - LEASE, True, id="ended-long"),
    ],
)
def test_which_links_are_stale(
    link: ActiveLink, now: float, first_seen: float | None, stale: bool
) -> None:
    """A link in SAQ's active list is handed on when its worker's lease lapsed, when it began
    longer ago than any run lasts, or when it sat there `LEASE` seconds not begun (or ended)."""
    seen = {} if first_seen is None else {link.saq_id: first_seen}
    assert Active(now, [link], {}, seen).stale(link, poll_timeout=30.0) is stale


async def test_links_are_due_by_redis_clock_not_a_worker_clock(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wait handed over due in 30 s stays parked when a worker whose clock is a minute ahead
    runs SAQ's scheduler; one due a moment ago by Redis's clock is enqueued."""
    queue = Queue.from_url(redis_url, name="q" + uuid.uuid4().hex[:8])
    links = Links(queue=queue, poll_timeout=30.0, outcome_ttl=60.0)
    later, passed = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        assert await links.submit([later, passed], None) == [True, True]
        seconds, micros = await queue.redis.time()
        now = seconds + micros / 1e6
        await links.hand_over(later, 0, None, now + 30.0, now)
        await links.hand_over(passed, 0, None, now - 5.0, now - 10.0)
        ahead = time.time() + 60.0
        monkeypatch.setattr(saq.queue.redis, "now_seconds", lambda: ahead)
        assert await queue.schedule() == []  # SAQ's scheduler, a minute ahead, moves neither
        assert await links.release_due() == 1
        incomplete = queue.namespace("incomplete")
        assert await queue.redis.zscore(incomplete, links.link_id(passed, 1)) == 0
        assert await queue.redis.zscore(incomplete, links.link_id(later, 1)) is None
        assert await queue.redis.zscore(links.parked_key, later) == now + 30.0
        assert await queue.redis.zscore(links.parked_key, passed) is None
    finally:
        await queue.disconnect()


async def test_parked_waits_due_while_redis_is_full_wait_for_room(redis_url: str) -> None:
    """The upkeep's move of the parked waits due into SAQ's queue is refused whole while Redis
    is out of memory (no wait taken out of the parked set, no link half written), and made
    once Redis has room again."""
    queue = Queue.from_url(redis_url, name="q" + uuid.uuid4().hex[:8])
    links = Links(queue=queue, poll_timeout=30.0, outcome_ttl=60.0)
    job_id = str(uuid.uuid4())
    try:
        assert await links.submit([job_id], None) == [True]
        await queue.redis.delete(queue.namespace("queued"))  # link 0 taken, and run
        assert await links.release_due() == 0  # (its script loaded)
        now = await _time(queue)
        await links.hand_over(job_id, 0, {"polls": 1}, now - 1.0, now - 2.0)
        try:
            await queue.redis.config_set("maxmemory", 1)
            with pytest.raises(OutOfMemoryError):
                await links.release_due()
        finally:
            await queue.redis.config_set("maxmemory", 0)
        assert await queue.redis.zscore(links.parked_key, job_id) == now - 1.0
        assert not await queue.redis.exists(links.link_id(job_id, 1))
        assert await links.release_due() == 1
        assert await queue.redis.zscore(links.parked_key, job_id) is None
        assert await queue.redis.lrange(queue.namespace("queued"), 0, -1) == [
            links.link_id(job_id, 1).encode()
        ]
    finally:
        await queue.disconnect()


async def test_in_a_full_redis_a_wait_ends_and_a_hand_over_waits_with_their_saq_records(
    redis_url: str,
) -> None:
    """While Redis is out of memory, a link's hand-over that writes its SAQ end is refused
    whole (the wait, its link and SAQ's record as they were, for SAQ's retry), and a wait's
    end is let through with its link's SAQ end (its first write frees memory): no wait is
    held from ending by a full Redis."""
    queue = Queue.from_url(redis_url, name="q" + uuid.uuid4().hex[:8])
    links = Links(queue=queue, poll_timeout=30.0, outcome_ttl=60.0)
    held, ending = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        assert await links.submit([held, ending], None) == [True, True]
        jobs = [await queue.dequeue() for _ in range(2)]
        records = {job.id: await queue.redis.get(job.id) for job in jobs if job is not None}
        now = await _time(queue)
        await links.hand_over(held, 5, None, now + 60.0, now)  # not live: its script loaded
        outcome = links.saq_job(function="", key=f"jobpoll:{ending}:outcome")
        assert not await links.deliver({"jobId": ending}, outcome, 5, answered_at=None)
        hand_over, end = (end_of(job, "polled") for job in jobs if job is not None)
        try:
            await queue.redis.config_set("maxmemory", 1)
            with pytest.raises(OutOfMemoryError):
                await links.hand_over(held, 0, {"polls": 1}, now + 60.0, now, end=hand_over)
            data = {"jobId": ending, "status": "FINISHED"}
            assert await links.deliver(data, outcome, 0, answered_at=None, end=end)
        finally:
            await queue.redis.config_set("maxmemory", 0)
        assert end is not None
        assert hand_over is not None
        assert await queue.redis.hget(links.wait_key(held), "step") == b"0"
        assert await queue.redis.get(hand_over.saq_id) == records[hand_over.saq_id]
        assert await queue.redis.lrange(queue.namespace("active"), 0, -1) == [
            hand_over.saq_id.encode()
        ]
        assert await queue.redis.hget(links.wait_key(ending), "result") is not None  # ended
        assert await queue.redis.hget(links.wait_key(ending), "step") is None
        assert await queue.redis.get(end.saq_id) == end.record.encode()
    finally:
        await queue.disconnect()


async def test_a_round_hands_on_every_link_of_a_dead_worker_at_once(redis_url: str) -> None:
    """50 links taken by a worker that holds no lease (dead) and one by a worker that does:
    one round hands on the 50 together, each to the next link due at once with its due time
    kept, and leaves the live worker's alone."""
    queue = Queue.from_url(redis_url, name="q" + uuid.uuid4().hex[:8])
    links = Links(queue=queue, poll_timeout=30.0, outcome_ttl=60.0)
    alive = Rescue(links=links)
    job_ids = [str(uuid.uuid4()) for _ in range(51)]
    try:
        assert all(await links.submit(job_ids, None))
        await queue.redis.delete(queue.namespace("queued"))  # links 0 taken, and run
        now = await _time(queue)
        for job_id in job_ids:  # links 1, due a minute ago, taken as workers take them
            await links.hand_over(job_id, 0, None, now - 60.0, now)
        while await queue.dequeue(timeout=0.1) is not None:
            pass
        rate = FleetRate(None, time.monotonic)
        await alive.renew()
        for index, job_id in enumerate(job_ids):
            await links.begin(job_id, 1, rate, 60.0, alive.token if index == 0 else "dead")
        assert await alive.round() == 50
        assert await queue.count("active") == 1
        steps = [await queue.redis.hget(links.wait_key(job_id), "step") for job_id in job_ids]
        assert steps == [b"1"] + [b"2"] * 50
        handed = await queue.job(f"jobpoll:{job_ids[1]}:2")
        assert handed is not None
        assert handed.kwargs == {"job_id": job_ids[1], "step": 2, "kept": 1}
        assert float(await queue.redis.hget(links.wait_key(job_ids[1]), "due")) == now - 60.0
        assert await queue.count("queued") == 50
    finally:
        await queue.disconnect()


async def _time(queue: Queue) -> float:
    """Redis's time."""
    seconds, micros = await queue.redis.time()
    return float(seconds + micros / 1e6)


async def test_a_wait_paused_after_a_late_start_keeps_its_lost_time(redis_url: str) -> None:
    """A link handed over unpolled (paused, or held) after starting late passes the time lost
    on: the next link counts itself late by as much, and its wait's deadline moves then."""
    queue = Queue.from_url(redis_url, name="q" + uuid.uuid4().hex[:8])
    links = Links(queue=queue, poll_timeout=30.0, outcome_ttl=60.0)
    job_id = str(uuid.uuid4())
    try:
        assert await links.submit([job_id], None) == [True]
        await links.hand_over(job_id, 0, None, 1000.0, 990.0, lost=40.0)
        assert float(await queue.redis.hget(links.wait_key(job_id), "due")) == 960.0
        # It runs at its place all the same.
        assert await queue.redis.zscore(links.parked_key, job_id) == 1000.0
    finally:
        await queue.disconnect()


async def _drain(
    fleet: Fleet, service: FakeJobsService, jobs: int, kill: int = 0
) -> tuple[float, float]:
    """Seconds from submitting `jobs` jobs (each over 12 s after) to their last outcome, and
    from SIGKILLing the first `kill` workers at once, while each has begun polls, to the next
    poll of every job one of them polled last."""
    job_ids = [service.add_job(duration=12.0, final_status="FINISHED") for _ in range(jobs)]
    start = time.monotonic()
    assert all(await fleet.waits.submit(job_ids))
    recovered = 0.0
    polls: dict[str, int] = {}
    if kill:
        victims = {f"w{index}" for index in range(kill)}
        polling = f"test:{fleet.queue_name}:polling"

        async def each_victim_polling() -> bool:
            return victims <= {name.decode() for name in await fleet.redis.hvals(polling)}

        await eventually(each_victim_polling, "each victim polling", within=120)
        for process in fleet.processes[:kill]:
            process.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        for process in fleet.processes[:kill]:
            await asyncio.to_thread(process.wait, 30)
        last = {
            key.decode(): name.decode()
            for key, name in (await fleet.redis.hgetall(polling)).items()
        }
        polls = {
            job_id: service.request_count(job_id)
            for job_id, name in last.items()
            if name in victims
        }
        await eventually(
            lambda: all(service.request_count(job_id) > count for job_id, count in polls.items()),
            "each job a victim polled last polled again",
            within=120,
        )
        recovered = time.monotonic() - killed
    await eventually(lambda: _outcomes_at_least(fleet, jobs), "every outcome", within=150)
    took = time.monotonic() - start
    outcomes = await fleet.outcomes()
    assert all(load_result(outcomes[job_id]).ok for job_id in job_ids)
    await eventually(lambda: delivered_once(fleet.waits, jobs), "each delivered once")
    print(f"{len(polls)} jobs a dead worker polled last")
    return took, recovered


async def _outcomes_at_least(fleet: Fleet, count: int) -> bool:
    return int(await fleet.redis.hlen(f"test:{fleet.queue_name}:outcomes")) >= count


async def test_eight_killed_workers_drain_within_twice_an_unkilled_run(
    redis_url: str, slow_service: FakeJobsService
) -> None:
    """120 jobs of 12 s: three workers drain them; eleven workers, eight of them SIGKILLed at
    once while polling, drain them too: every job a dead worker polled last is polled again
    (the dead workers' polls are handed on together, within `RESCUED_WITHIN`, not one each
    5 s), and each outcome is delivered once. The times are printed, not asserted (they are
    the machine's): `pytest tests/test_saq_recovery.py -k eight -s` shows them."""
    async with fleet_of(redis_url, slow_service, 3) as fleet:
        unkilled, _ = await _drain(fleet, slow_service, 120)
    async with fleet_of(redis_url, slow_service, 11) as fleet:
        killed, recovered = await _drain(fleet, slow_service, 120, kill=8)
    print(f"drained in {unkilled:.1f} s unkilled, {killed:.1f} s with 8 kills")
    print(f"the polls the dead workers held made again within {recovered:.1f} s of the kills")


async def _redis_time(fleet: Fleet) -> float:
    return await _time(fleet.waits.queue)


async def test_a_wait_lost_past_its_deadline_ends_with_its_job(
    redis_url: str, service: FakeJobsService
) -> None:
    """With no worker for longer than the waits' timeout, a job that finished meanwhile ends
    with its outcome, not a `WaitTimeout` (its deadline leaves out the time its poll was
    late); a job still running times out once it was waited for its timeout on schedule."""
    finishing, running = service.add_job(duration=math.inf), service.add_job(duration=math.inf)
    async with fleet_of(redis_url, service, 1) as fleet:
        assert await fleet.waits.submit([finishing, running], timeout=8.0) == [True, True]
        await eventually(
            lambda: min(service.request_count(finishing), service.request_count(running)) >= 2,
            "two polls of each",
        )
        worker = fleet.processes[0]
        worker.send_signal(signal.SIGTERM)  # its polls handed back, to no worker
        await asyncio.to_thread(worker.wait, 30)
        stopped = await _redis_time(fleet)
        service.set_job(finishing, status="FINISHED", progress=100)
        await eventually(
            lambda: _redis_time_past(fleet, stopped + 8.0 + LOST_AFTER + 1),
            "the waits' deadlines and more gone by",
        )
        fleet.start(1)
        await fleet.ready()
        done = await asyncio.wait_for(fleet.waits.result(finishing), 60)
        timed_out = await asyncio.wait_for(fleet.waits.result(running), 60)
    assert done.ok, done.error
    assert isinstance(timed_out.error, WaitTimeout)


async def _redis_time_past(fleet: Fleet, moment: float) -> bool:
    return await _redis_time(fleet) > moment


@pytest.mark.parametrize("offset", [60.0, -60.0], ids=["ahead", "behind"])
async def test_a_worker_a_minute_off_changes_no_outcome(
    redis_url: str, service: FakeJobsService, offset: float
) -> None:
    """Three workers, one whose wall clock is a minute ahead (or behind): 60 jobs of a few
    seconds, waited for with a timeout of 30 s, each end with their own outcome, none with a
    `WaitTimeout`; the worker that is off polls its share."""
    expected: dict[str, str] = {}
    async with fleet_of(redis_url, service, 2) as fleet:
        fleet.start(1, env={"JOBPOLL_TEST_CLOCK_OFFSET": repr(offset)})
        await fleet.ready()
        for index in range(60):
            final = "FINISHED" if index % 4 else "FAILED"
            job_id = service.add_job(duration=3.0 + (index % 7), final_status=final)
            expected[job_id] = final
        assert all(await fleet.waits.submit(list(expected), timeout=30.0))
        await eventually(lambda: _outcomes_at_least(fleet, len(expected)), "every outcome", 90)
        outcomes = await fleet.outcomes()
        steps = await fleet.steps("w2")
        await eventually(lambda: delivered_once(fleet.waits, len(expected)), "each delivered once")
    got: dict[str, Any] = {}
    for job_id, data in outcomes.items():
        result = load_result(data)
        got[job_id] = result.job.raw_status if result.job is not None else result.error
    assert got == expected
    assert steps.get("polled", 0) >= 10  # the worker that is off did poll


async def test_a_full_redis_ends_no_wait_early(redis_url: str, service: FakeJobsService) -> None:
    """Redis out of memory (no eviction) for 20 s under two workers, while the jobs end: once
    it has room again, every wait ends with its job's outcome, none with a `WaitTimeout`,
    though its timeout (12 s) went by while Redis was full; the links left behind by the
    polls Redis refused are handed on."""
    job_ids = [service.add_job(duration=math.inf) for _ in range(40)]
    async with fleet_of(redis_url, service, 2, poll_timeout=10.0) as fleet:
        assert all(await fleet.waits.submit(job_ids, timeout=12.0))
        await eventually(
            lambda: all(service.request_count(job_id) >= 2 for job_id in job_ids),
            "two polls of each",
        )
        full_since = await _redis_time(fleet)
        await fleet.redis.config_set("maxmemory", 1)
        try:
            for job_id in job_ids:
                service.set_job(job_id, status="FINISHED", progress=100)
            await eventually(
                lambda: _redis_time_past(fleet, full_since + 20.0), "20 s of a full Redis"
            )
        finally:
            await fleet.redis.config_set("maxmemory", 0)
        await eventually(lambda: _outcomes_at_least(fleet, len(job_ids)), "every outcome", 60)
        outcomes = await fleet.outcomes()
    assert all(load_result(outcomes[job_id]).ok for job_id in job_ids), [
        load_result(outcomes[job_id]).error for job_id in job_ids
    ]

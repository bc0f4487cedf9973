"""The Redis under a SAQ queue: checked before it holds waits, watched for a loss of its data,
its errors raised as jobpoll's, and waited for quietly by the workers while it is away."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

if not os.environ.get("CI"):
    pytest.importorskip("saq", reason="the saq extra is not installed (pip install '.[saq]')")

from redis.asyncio import Redis
from redis.exceptions import AuthenticationError
from saq import Queue
from saq_worker import make_waits
from support import RedisServer
from test_saq import WORKER, Fleet, eventually, fleet_of, mixed_jobs

from jobpoll import JobResult, QueueDataLost, QueueNotDurable, QueueUnavailable
from jobpoll._saq_outage import FIRST_RETRY, LAST_RETRY, Outage
from jobpoll._saq_redis import Durability, RedisSettings, durability_refusal
from jobpoll.saq import SaqWaits
from jobpoll.testing import FakeJobsService, VirtualClock

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def service() -> AsyncIterator[FakeJobsService]:
    async with FakeJobsService() as fake:  # real time: the workers are other processes
        yield fake


@contextlib.contextmanager
def redis_with(*arguments: str) -> Iterator[RedisServer]:
    with RedisServer(*arguments) as server:
        yield server


@contextlib.asynccontextmanager
async def waits_on(url: str, durability: Durability = "checked") -> AsyncIterator[SaqWaits]:
    waits = SaqWaits(Queue.from_url(url, name="checks"), on_outcome=None, durability=durability)
    try:
        yield waits
    finally:
        # SAQ's disconnect speaks to Redis: with a refused password, there is nothing to close.
        with contextlib.suppress(AuthenticationError):
            await waits.queue.disconnect()


AOF = ("--appendonly", "yes")


@pytest.mark.parametrize(
    "policy", ["allkeys-lru", "volatile-lru", "volatile-ttl", "allkeys-random"]
)
@pytest.mark.parametrize("durability", ["checked", "volatile-accepted", "declared"])
async def test_an_evicting_redis_is_refused(policy: str, durability: Durability) -> None:
    """A Redis that may evict keys holds no wait, whatever the user declares: `submit()`
    raises a `QueueNotDurable` naming the setting and the command that changes it."""
    with redis_with(*AOF, "--maxmemory-policy", policy) as server:
        async with waits_on(server.url, durability) as waits:
            with pytest.raises(QueueNotDurable) as refused:
                await waits.submit(["35f23c03-1c22-45fe-9484-3ffe769325de"])
            assert await waits.queue.redis.dbsize() == 0  # nothing was written
    assert (refused.value.setting, refused.value.value) == ("maxmemory-policy", policy)
    assert "CONFIG SET maxmemory-policy noeviction" in str(refused.value)
    assert refused.value.affects_all


@pytest.mark.parametrize(
    ("arguments", "durability", "refused"),
    [
        pytest.param((), "checked", True, id="none"),
        pytest.param((), "volatile-accepted", False, id="none-accepted"),
        pytest.param(AOF, "checked", False, id="aof"),
        pytest.param(("--save", "3600 1"), "checked", False, id="rdb"),
    ],
)
async def test_a_redis_that_keeps_nothing_on_disk_is_refused_unless_accepted(
    arguments: tuple[str, ...], durability: Durability, refused: bool
) -> None:
    """No AOF and no RDB snapshots: `submit()` raises a `QueueNotDurable` about `appendonly`,
    unless the user accepts that a restart loses the waits; either kind of persistence passes."""
    job_id = "35f23c03-1c22-45fe-9484-3ffe769325de"
    with redis_with(*arguments) as server:
        async with waits_on(server.url, durability) as waits:
            if refused:
                with pytest.raises(QueueNotDurable) as caught:
                    await waits.submit([job_id])
                assert caught.value.setting == "appendonly"
                assert "CONFIG SET appendonly yes" in str(caught.value)
                assert 'durability="volatile-accepted"' in str(caught.value)
            else:
                assert await waits.submit([job_id]) == [True]


async def test_a_worker_refuses_a_redis_that_would_lose_its_waits() -> None:
    """A worker started on a Redis that keeps nothing on disk exits at once with a
    `QueueNotDurable`, instead of running waits that a restart would lose."""
    with redis_with() as server:
        worker = await asyncio.create_subprocess_exec(
            *[sys.executable, str(WORKER), "--redis", server.url, "--queue", "refused"],
            *["--base-url", "http://127.0.0.1:9", "--api-key", "fake-key", "--name", "w0"],
            stderr=subprocess.PIPE,
        )
        _, stderr = await asyncio.wait_for(worker.communicate(), 60)
    assert worker.returncode != 0
    assert "jobpoll._errors.QueueNotDurable: Redis keeps no copy" in stderr.decode()


PASSWORD = "S3cret-Passw0rd-of-Redis"
#: A user that may not run CONFIG, as a managed Redis has.
NO_CONFIG = ("--user", "default", "off", "--user", "app", "on", f">{PASSWORD}", "~*", "&*", "+@all")
NO_CONFIG += ("-config",)


@pytest.mark.parametrize(
    ("durability", "refused"),
    [
        pytest.param("checked", True, id="checked"),
        pytest.param("declared", False, id="declared"),
    ],
)
async def test_settings_redis_does_not_let_be_read_must_be_declared(
    durability: Durability, refused: bool
) -> None:
    """A Redis that refuses CONFIG (with no AOF that INFO shows) is refused, naming the
    keyword that declares its settings; declared, it is used."""
    with redis_with(*NO_CONFIG) as server:
        url = server.url.replace("//", f"//app:{PASSWORD}@")
        async with waits_on(url, durability) as waits:
            if refused:
                with pytest.raises(QueueNotDurable) as caught:
                    await waits.submit(["35f23c03-1c22-45fe-9484-3ffe769325de"])
                assert caught.value.value is None
                assert 'durability="declared"' in str(caught.value)
                assert "config" in str(caught.value).lower()
                assert PASSWORD not in str(caught.value)
            else:
                assert await waits.submit(["35f23c03-1c22-45fe-9484-3ffe769325de"]) == [True]


def test_durability_rules() -> None:
    """What each setting allows, without a Redis: eviction is never accepted, a Redis that
    says nothing is accepted only when declared."""
    unread = RedisSettings(None, None, None, unread="NoPermissionError: no")
    aof = RedisSettings("noeviction", True, None)
    bare = RedisSettings("noeviction", False, "")
    assert durability_refusal(aof, "checked") is None
    assert durability_refusal(unread, "declared") is None
    assert durability_refusal(bare, "volatile-accepted") is None
    refused = durability_refusal(unread, "checked")
    assert refused is not None
    assert refused.setting == "maxmemory-policy"
    assert "NoPermissionError: no" in str(refused)
    refused = durability_refusal(unread, "volatile-accepted")
    assert refused is not None
    assert refused.setting == "maxmemory-policy"
    refused = durability_refusal(RedisSettings("noeviction", False, None), "checked")
    assert refused is not None
    assert (refused.setting, refused.value) == ("appendonly", None)


def test_durability_is_checked_at_once() -> None:
    """An unknown `durability` is refused when `SaqWaits` is made."""
    queue = Queue.from_url("redis://127.0.0.1:1", name="checks")
    with pytest.raises(ValueError, match="durability"):
        SaqWaits(queue, on_outcome=None, durability="none")  # type: ignore[arg-type]


async def test_redis_errors_are_jobpoll_errors_without_the_password() -> None:
    """Every call that reaches a Redis that is away raises a `QueueUnavailable` (transient),
    chained to Redis's own error, and no message holds the password; a wrong password is a
    `QueueUnavailable` that is not transient."""
    with redis_with(*AOF, "--requirepass", PASSWORD) as server:
        url = server.url.replace("//", f"//:{PASSWORD}@")
        async with waits_on(url) as waits:
            assert await waits.submit(["35f23c03-1c22-45fe-9484-3ffe769325de"]) == [True]
            await asyncio.to_thread(server.stop)
            calls = {
                "submit": waits.submit(["35f23c03-1c22-45fe-9484-3ffe769325de"]),
                "result": waits.result("35f23c03-1c22-45fe-9484-3ffe769325de"),
                "delivered": waits.delivered(),
                "mend": waits.mend(),
            }
            for name, call in calls.items():
                with pytest.raises(QueueUnavailable) as caught:
                    await call
                error = caught.value
                assert error.transient, name
                assert type(error.__cause__).__module__.startswith("redis."), name
                assert PASSWORD not in str(error) + repr(error), name
                assert "'checks'" in str(error), name
            await asyncio.to_thread(server.start)  # for SAQ's disconnect, which needs it
        wrong = server.url.replace("//", "//:not-the-password@")
        async with waits_on(wrong) as waits:
            with pytest.raises(QueueUnavailable) as caught:
                await waits.submit(["35f23c03-1c22-45fe-9484-3ffe769325de"])
    assert not caught.value.transient
    assert "not-the-password" not in str(caught.value)


async def test_a_redis_that_lost_its_data_is_detected(
    service: FakeJobsService, tmp_path: Path
) -> None:
    """A Redis flushed while `result()` waits: the call raises `QueueDataLost` instead of
    waiting forever, and the worker logs the loss once at ERROR; after a restart without
    persistence, a `result()` of the process that saw the queue before raises it too."""
    job_id = service.add_job(duration=math.inf)
    with redis_with() as server:
        async with fleet_of(
            server.url, service, 1, durability="volatile-accepted", log_dir=tmp_path
        ) as fleet:
            assert await fleet.waits.submit([job_id]) == [True]
            await eventually(lambda: service.request_count(job_id) >= 2, "two polls")
            waiting = asyncio.ensure_future(fleet.waits.result(job_id))
            await eventually(lambda: _subscribed(fleet.redis), "result() listening")
            await fleet.redis.flushall()
            with pytest.raises(QueueDataLost):
                await asyncio.wait_for(waiting, 30)
            log = tmp_path / "w0.log"
            await eventually(lambda: "lost SAQ queue" in log.read_text(), "the worker's ERROR")

            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            await fleet.redis.set("someone:else", 1)  # the submitter's connection is back
            with pytest.raises(QueueDataLost):
                await asyncio.wait_for(fleet.waits.result(job_id), 30)
            # A wait submitted afterwards ends as it should.
            service.set_job(job_id, status="FINISHED", progress=100)
            assert await fleet.waits.submit([job_id]) == [True]
            result = await asyncio.wait_for(fleet.waits.result(job_id), 60)
            assert result.ok
            await eventually(
                lambda: log.read_text().count("lost SAQ queue") >= 2,
                "the worker's ERROR about the restart (at its next look, every mend_interval)",
            )
    losses = [line for line in log.read_text().splitlines() if "lost SAQ queue" in line]
    assert len(losses) == 2  # one per loss: the flush, the restart
    assert all(line.startswith("ERROR:jobpoll:") for line in losses)


async def test_a_wait_submitted_after_a_loss_is_waited_for(service: FakeJobsService) -> None:
    """Redis flushed after two processes saw the queue, then a third submits a job: a
    `result()` of that job in the first process (which saw the queue before the loss) returns
    its outcome; `results()` in the second raises `QueueDataLost` for the job whose wait the
    loss took, naming it, not the other."""
    before = service.add_job(duration=math.inf)
    after = service.add_job(duration=0.5, final_status="FINISHED")
    with redis_with(*AOF) as server:
        async with fleet_of(server.url, service, 1) as fleet:
            others = [make_waits(server.url, fleet.queue_name, 30.0) for _ in range(2)]
            try:
                first, second, third = fleet.waits, *others
                assert await first.submit([before]) == [True]
                assert await second.submit([before]) == [False]  # it has seen the queue
                await fleet.redis.flushdb()
                assert await third.submit([after]) == [True]
                result = await asyncio.wait_for(first.result(after), 60)
                assert result.ok
                with pytest.raises(QueueDataLost) as lost:
                    await asyncio.wait_for(_all_results(second, [after, before]), 60)
            finally:
                for waits in others:
                    await waits.queue.disconnect()
    assert repr(before) in str(lost.value)
    assert repr(after) not in str(lost.value)
    assert "while this call waited" not in str(lost.value)


async def _all_results(waits: SaqWaits, job_ids: list[str]) -> list[JobResult]:
    return [result async for result in waits.results(job_ids)]


async def _subscribed(redis: Redis) -> bool:
    return bool(await redis.pubsub_channels())


async def test_a_restart_with_aof_loses_nothing(service: FakeJobsService) -> None:
    """Redis restarted (AOF, `appendfsync everysec`) while 60 waits of mixed outcome run
    over two workers: every wait ends with its true outcome, each delivered once."""
    expected = mixed_jobs(service, 60, lambda index: 2.0 + (index % 6) * 0.5)
    with redis_with(*AOF, "--appendfsync", "everysec") as server:
        async with fleet_of(server.url, service, 2, poll_timeout=6.0, concurrency=4) as fleet:
            assert all(await fleet.waits.submit(list(expected)))
            await eventually(
                lambda: sum(service.request_count(job_id) for job_id in expected) >= 60,
                "the waits under way",
            )
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            async with asyncio.timeout(100):
                outcomes = {result.job_id: result async for result in fleet.waits.results(expected)}
            await eventually(lambda: _every_call(fleet, len(expected)), "every outcome delivered")
            # A call that returned as Redis went away is counted once Redis is back.
            await eventually(lambda: _delivered_count(fleet, len(expected)), "all counted")
            assert await fleet.waits.delivered() == len(expected)
    for job_id, kind in expected.items():
        result = outcomes[job_id]
        assert ("ok" if result.ok else type(result.error).__name__) == kind, job_id


async def _delivered_count(fleet: Fleet, count: int) -> bool:
    return await fleet.waits.delivered() >= count


async def _every_call(fleet: Fleet, count: int) -> bool:
    return len(await fleet.outcomes()) >= count


@pytest.mark.parametrize("how", ["stopped", "full"])
async def test_a_worker_is_quiet_while_redis_is_away(
    how: str, service: FakeJobsService, tmp_path: Path
) -> None:
    """A worker whose Redis stops, or fills up (`noeviction`: writes refused), logs one line
    when the outage begins and one, with its length, when it ends: no traceback at each tick
    of SAQ's upkeep, no line per try; `submit()` meanwhile raises a transient
    `QueueUnavailable`."""
    with redis_with(*AOF) as server:
        async with fleet_of(server.url, service, 1, log_dir=tmp_path) as fleet:
            log = tmp_path / "w0.log"
            if how == "stopped":
                await asyncio.to_thread(server.stop)
            else:
                await fleet.redis.config_set("maxmemory", 1)
            await eventually(lambda: "is away" in log.read_text(), "the outage logged")
            with pytest.raises(QueueUnavailable) as caught:
                await fleet.waits.submit(["35f23c03-1c22-45fe-9484-3ffe769325de"])
            assert caught.value.transient
            # Ticks of SAQ's upkeep in the outage, each of which used to log a traceback.
            ticks = fleet.ticks(0)
            seen = ticks.stat().st_size
            await eventually(
                lambda: ticks.stat().st_size >= seen + 3, "three upkeep ticks in the outage"
            )
            if how == "stopped":
                await asyncio.to_thread(server.start)
            else:
                await fleet.redis.config_set("maxmemory", 0)
            await eventually(lambda: "is back after" in log.read_text(), "the end logged")
            assert fleet.processes[0].poll() is None  # still running
            lines = log.read_text().splitlines()
    assert len(lines) == 2, lines
    assert "is away" in lines[0]
    assert lines[1].startswith("WARNING:jobpoll:Redis of SAQ queue")
    assert "is back after" in lines[1]


async def test_an_outage_backs_off() -> None:
    """The tries while Redis is away come `FIRST_RETRY` after the first failure, doubling, at
    most `LAST_RETRY` apart; the end of the outage is the next success."""
    now = [0.0]
    waited: list[float] = []

    async def sleep(delay: float) -> None:
        waited.append(delay)
        now[0] += delay

    outage = Outage("q", clock=lambda: now[0], sleep=sleep)
    error = ConnectionError("refused")
    for _ in range(8):
        await outage.turn()
        outage.failed(error)
    assert waited[0] == pytest.approx(2 * FIRST_RETRY)
    assert waited == sorted(waited)
    assert waited[-1] == LAST_RETRY
    outage.reached(wrote=False)
    assert outage.began is None
    await outage.turn()
    assert len(waited) == 7  # no wait once reachable


async def test_an_outage_backs_off_per_try_however_many_slots_fail_in_it() -> None:
    """Ten slots (SAQ's default concurrency) failing together in each try count as one
    failure: the tries come 0.2 s after the first, doubling, not 5 s at once."""
    clock = VirtualClock()
    outage = Outage("q", clock=clock, sleep=clock.sleep)
    error = ConnectionError("refused")
    for _ in range(8):
        await outage.turn()
        for _slot in range(10):
            outage.failed(error)
    assert clock.sleeps == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, LAST_RETRY, LAST_RETRY])

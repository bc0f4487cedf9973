"""Waits scaled out on SAQ: worker processes against a real Redis and the fake service."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import uuid
from asyncio.subprocess import PIPE
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

if not os.environ.get("CI"):
    pytest.importorskip("saq", reason="the saq extra is not installed (pip install '.[saq]')")

from saq_worker import make_waits

from jobpoll import (
    ConfigurationError,
    DecodeError,
    Job,
    JobFailedError,
    JobPollError,
    JobResult,
    JobStatus,
    NotFound,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    WaitTimeout,
)
from jobpoll._saq_redis import Durability
from jobpoll.saq import SaqWaits, load_result, result_to_json
from jobpoll.testing import FakeJobsService, Patch, RateLimit, Slow

pytestmark = pytest.mark.timeout(120)

WORKER = Path(__file__).parent / "saq_worker.py"


async def eventually(check: Callable[[], Any], what: str, within: float = 60.0) -> None:
    """Wait (generously) until `check()` (sync or async) is true."""
    async with asyncio.timeout(within):
        while True:
            value = check()
            if asyncio.iscoroutine(value):
                value = await value
            if value:
                return
            await asyncio.sleep(0.1)
    raise AssertionError(what)  # pragma: no cover


class Fleet:
    """Worker processes sharing one queue, and a view of what they recorded in Redis."""

    def __init__(
        self,
        redis_url: str,
        service: FakeJobsService,
        poll_timeout: float,
        concurrency: int,
        outcome: str = "record_outcome",
        durability: Durability = "checked",
        log_dir: Path | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.outcome = outcome
        self.queue_name = "q" + uuid.uuid4().hex[:8]
        self.redis_url = redis_url
        self.service = service
        self.poll_timeout = poll_timeout
        self.durability = durability
        self.log_dir = log_dir  # each worker's stderr in `w<index>.log` there, if given
        self.processes: list[subprocess.Popen[bytes]] = []
        self.waits = make_waits(redis_url, self.queue_name, poll_timeout, outcome, durability)
        self.redis = self.waits.queue.redis

    def start(
        self,
        count: int,
        api_key: str | None = None,
        concurrency: int | None = None,
        request_timeout: float = 4.0,
        env: dict[str, str] | None = None,
    ) -> None:
        """Start `count` more workers (`env`: more environment variables for them)."""
        for index in range(len(self.processes), len(self.processes) + count):
            stderr = None if self.log_dir is None else (self.log_dir / f"w{index}.log").open("wb")
            self.processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(WORKER),
                        "--redis",
                        self.redis_url,
                        "--queue",
                        self.queue_name,
                        "--base-url",
                        self.service.base_url,
                        "--api-key",
                        api_key or self.service.api_key,
                        "--name",
                        f"w{index}",
                        "--poll-timeout",
                        str(self.poll_timeout),
                        "--concurrency",
                        str(concurrency or self.concurrency),
                        "--outcome",
                        self.outcome,
                        "--request-timeout",
                        str(request_timeout),
                        "--durability",
                        self.durability,
                        *([] if self.log_dir is None else ["--ticks", str(self.ticks(index))]),
                    ],
                    stderr=stderr,
                    env=None if env is None else {**os.environ, **env},
                )
            )
            if stderr is not None:
                stderr.close()  # the worker has its own copy

    def ticks(self, index: int) -> Path:
        """The file where worker `index` counts the ticks of SAQ's schedule upkeep (with
        `log_dir`: a byte per tick)."""
        assert self.log_dir is not None
        return self.log_dir / f"w{index}.ticks"

    async def ready(self) -> None:
        await eventually(self._all_ready, "workers started")

    async def _all_ready(self) -> bool:
        ready = await self.redis.llen(f"test:{self.queue_name}:ready")
        return int(ready) >= len(self.processes)

    async def outcomes(self) -> dict[str, dict[str, Any]]:
        raw = await self.redis.hgetall(f"test:{self.queue_name}:outcomes")
        return {key.decode(): json.loads(value) for key, value in raw.items()}

    async def calls(self) -> list[tuple[str, int]]:
        raw = await self.redis.lrange(f"test:{self.queue_name}:calls", 0, -1)
        return [(line.split()[0].decode(), int(line.split()[1])) for line in raw]

    async def steps(self, name: str) -> dict[str, int]:
        raw = await self.redis.hgetall(f"test:{self.queue_name}:steps:{name}")
        return {key.decode(): int(value) for key, value in raw.items()}

    async def incomplete(self) -> int:
        return int(await self.waits.queue.count("incomplete"))

    async def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 30)
        await self.waits.queue.disconnect()


@pytest.fixture
async def service() -> AsyncIterator[FakeJobsService]:
    async with FakeJobsService() as fake:  # real time: the workers are other processes
        yield fake


@contextlib.asynccontextmanager
async def fleet_of(
    redis_url: str,
    service: FakeJobsService,
    workers: int,
    poll_timeout: float = 30.0,
    concurrency: int = 20,
    outcome: str = "record_outcome",
    durability: Durability = "checked",
    log_dir: Path | None = None,
) -> AsyncIterator[Fleet]:
    fleet = Fleet(redis_url, service, poll_timeout, concurrency, outcome, durability, log_dir)
    try:
        fleet.start(workers)
        await fleet.ready()
        yield fleet
    finally:
        await fleet.stop()


def mixed_jobs(
    service: FakeJobsService, count: int, duration: Callable[[int], float]
) -> dict[str, str]:
    """`count` jobs of `duration(index)` seconds, a third of them FAILED, the rest FINISHED:
    each id with the outcome its wait must end with ("ok", or the error's class name)."""
    expected: dict[str, str] = {}
    for index in range(count):
        failed = index % 3 == 0
        job_id = service.add_job(
            duration=duration(index), final_status="FAILED" if failed else "FINISHED"
        )
        expected[job_id] = "JobFailedError" if failed else "ok"
    return expected


async def test_three_workers_one_killed_every_outcome_exactly_once(
    redis_url: str, service: FakeJobsService
) -> None:
    """500 jobs of mixed outcome over three workers, one SIGKILLed mid-poll: each outcome is
    enqueued once, and arrives; the cut poll is made again by another worker."""
    expected: dict[str, str] = {}
    for index in range(500):
        kind = index % 10
        duration = 0.5 + (index % 7) * 0.3
        if kind < 6:
            expected[service.add_job(duration=duration, final_status="FINISHED")] = "ok"
        elif kind == 6:
            expected[service.add_job(duration=duration, final_status="FAILED")] = "JobFailedError"
        elif kind == 7:
            expected[service.add_job(duration=duration, final_status="CANCELED")] = "JobFailedError"
        elif kind == 8:
            expected[str(uuid.uuid4())] = "NotFound"  # never added: 404
        else:
            expected[service.add_job(duration=3600)] = "WaitTimeout"
    held = service.add_job(duration=math.inf)  # its poll is cut by the kill; then finished
    expected[held] = "ok"
    timed = [job_id for job_id, kind in expected.items() if kind == "WaitTimeout"]
    others = [job_id for job_id, kind in expected.items() if kind != "WaitTimeout"]

    # Few links at a time per worker: the cut poll is made again by another worker once the
    # dead one's lease lapsed.
    async with fleet_of(redis_url, service, 3, poll_timeout=6.0, concurrency=2) as fleet:
        assert all(await fleet.waits.submit(others))
        assert all(await fleet.waits.submit(timed, timeout=3.0))
        await eventually(lambda: _at_least(fleet, 250), "half of the outcomes")
        # Hold the next poll of one job at the service; the worker making it is killed then.
        polls_before = service.request_count(held)
        service.inject(Slow(30.0), job_id=held, times=1)
        await eventually(lambda: service.request_count(held) > polls_before, "the held poll")
        victim = await _worker_of(fleet, held)
        process = fleet.processes[int(victim.removeprefix("w"))]
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, 30)
        service.set_job(held, status="FINISHED", progress=100)
        await eventually(lambda: _at_least(fleet, len(expected)), "every outcome", within=90)
        await eventually(lambda: _none_incomplete(fleet), "no link left in the queue")

        outcomes = await fleet.outcomes()
        await eventually(lambda: delivered_once(fleet.waits, len(expected)), "each delivered once")
        calls = await fleet.calls()
    assert set(outcomes) == set(expected)
    for job_id, kind in expected.items():
        result = load_result(outcomes[job_id])
        assert result.job_id == job_id
        got = "ok" if result.ok else type(result.error).__name__
        assert got == kind, (job_id, outcomes[job_id])
    # The outcome function ran once per job, or again only as SAQ's retry of a call whose
    # worker died under it (at-least-once, as SAQ runs any job).
    per_id = Counter(job_id for job_id, _attempt in calls)
    for job_id, count in per_id.items():
        if count > 1:
            assert max(a for i, a in calls if i == job_id) > 1, job_id


async def _worker_of(fleet: Fleet, job_id: str) -> str:
    """The worker that took up the last link of `job_id` (each notes it before it polls)."""
    name = await fleet.redis.hget(f"test:{fleet.queue_name}:polling", job_id)
    assert name is not None
    return str(name.decode())


async def _progress_kept(fleet: Fleet, job_id: str) -> bool:
    """The wait's kept checkpoint shows the job's status and progress, and the polls made."""
    queue = fleet.waits.queue
    kept = await queue.redis.get(f"jobpoll:{fleet.queue_name}:saved:{job_id}")
    if kept is None:
        return False
    _header, (job, _failures, polls, *_rest) = json.loads(kept)  # docs/guides/saq.md
    return job["status"] == "RUNNING" and job["progress"] == 40 and polls >= 1


async def _at_least(fleet: Fleet, count: int) -> bool:
    return int(await fleet.redis.hlen(f"test:{fleet.queue_name}:outcomes")) >= count


async def delivered_once(waits: SaqWaits, count: int) -> bool:
    """`count` outcomes delivered (a call of the outcome function returned), no more."""
    delivered = await waits.delivered()
    assert delivered <= count
    return delivered == count


async def _none_incomplete(fleet: Fleet) -> bool:
    return await fleet.incomplete() == 0


async def test_one_chain_per_job_however_often_submitted(
    redis_url: str, service: FakeJobsService
) -> None:
    """The same id submitted from several processes at once, and again later, is polled by
    one chain: one poll per link, one outcome."""
    # Running until the test has seen it waited for (however long the workers take to start),
    # then finished by the test.
    job_id = service.add_job(duration=math.inf)
    service.set_job(job_id, status="RUNNING", progress=40)
    async with fleet_of(redis_url, service, 3) as fleet:
        submitters = [make_waits(redis_url, fleet.queue_name, fleet.poll_timeout) for _ in range(3)]
        try:
            started = await asyncio.gather(*(w.submit([job_id]) for w in submitters))
            assert sorted(flag for (flag,) in started) == [False, False, True]
            await eventually(lambda: service.request_count(job_id) >= 1, "the first poll")
            await eventually(lambda: _progress_kept(fleet, job_id), "its progress kept")
            assert await fleet.waits.submit([job_id, job_id]) == [False, False]
            service.set_job(job_id, status="FINISHED", progress=100)
            async with asyncio.timeout(60):
                result = await submitters[1].result(job_id)
            assert await fleet.waits.submit([job_id]) == [False]  # the outcome is kept
        finally:
            for submitter in submitters:
                await submitter.queue.disconnect()
        assert isinstance(result, JobResult)
        assert result.ok
        assert result.job is not None
        assert result.job.succeeded
        # result() has the outcome once it is decided; job_ended may run a moment later.
        await eventually(lambda: _at_least(fleet, 1), "the outcome function's call")
        stored = (await fleet.outcomes())[job_id]
        assert stored["polls"] == service.request_count(job_id)  # one chain's polls, no more
        await eventually(lambda: delivered_once(fleet.waits, 1), "delivered once")


async def test_the_fleets_slow_start_holds_polls_in_their_worker(redis_url: str) -> None:
    """Before any refusal, the polls over the fleet's slow-start window wait in their worker
    and ask again: none is handed over (which would bring it back at once, to ask again, in a
    spin of SAQ jobs), and the first answers are awaited before more polls go out."""
    async with FakeJobsService(latency=0.5) as slow:
        job_ids = [slow.add_job(duration=math.inf) for _ in range(40)]
        async with fleet_of(redis_url, slow, 1, concurrency=20) as fleet:
            assert all(await fleet.waits.submit(job_ids))
            await eventually(
                lambda: all(slow.request_count(job_id) >= 1 for job_id in job_ids),
                "each job polled once",
            )
            assert (await fleet.steps("w0")).get("paused", 0) == 0
            assert slow.peak_in_flight <= 20


async def test_a_rate_limit_met_by_some_polls_slows_every_worker(
    redis_url: str, service: FakeJobsService
) -> None:
    """A gateway's limit (a token bucket answering 503 with a `Retry-After`) refuses some
    polls: the rate every worker shares is cut, through Redis, and every worker hands the polls
    whose turn is over a second away over unpolled; the waits ride it out, each outcome
    delivered once."""
    # Running until every worker has met the limit (however long they take to start).
    job_ids = [service.add_job(duration=math.inf) for _ in range(60)]
    # Redis hands the links due at each tick of SAQ's scheduler to the workers' waiting
    # connections in the order they began to wait: with 4 each (12 in all) and dozens of
    # links due at each tick, every worker takes some of every tick's links.
    async with fleet_of(redis_url, service, 3, concurrency=4) as fleet:
        assert all(await fleet.waits.submit(job_ids))
        await eventually(
            lambda: all(service.request_count(job_id) >= 1 for job_id in job_ids),
            "each job polled once",
        )
        # 60 jobs polled each second, 5 polls a second allowed: a line of turns forms. (The
        # fleet's slow start may have handed polls over already: counted from here.)
        names = ("w0", "w1", "w2")
        before = {name: (await fleet.steps(name)).get("paused", 0) for name in names}
        service.rate_limit = RateLimit(5.0, burst=1.0, retry_after=2.0, status=503)

        async def every_worker_paused() -> bool:
            return all(
                [await _steps_at_least(fleet, name, "paused", before[name] + 1) for name in names]
            ) and b"cuts" in await fleet.redis.hgetall(f"jobpoll:{fleet.queue_name}:rate")

        await eventually(every_worker_paused, "every worker's polls handed over", within=90)
        service.rate_limit = None
        for job_id in job_ids:
            service.set_job(job_id, status="FINISHED", progress=100)
        await eventually(lambda: _at_least(fleet, len(job_ids)), "every outcome", within=90)
        shared = await fleet.redis.hgetall(f"jobpoll:{fleet.queue_name}:rate")
        outcomes = await fleet.outcomes()
        await eventually(lambda: delivered_once(fleet.waits, len(job_ids)), "each delivered once")
    assert int(shared[b"cuts"]) >= 1
    assert float(shared[b"hold_until"]) > float(shared[b"cut_at"])  # the Retry-After's hold
    assert all(load_result(outcome).ok for outcome in outcomes.values())


async def test_every_outcome_once_under_a_rate_limit(
    redis_url: str, service: FakeJobsService
) -> None:
    """300 jobs of mixed outcome over three workers, against a limit of 30 polls a second
    (429 over it) that the workers are not told of: each outcome is delivered exactly once,
    and the shared rate learned the limit (cut at least once, to below twice the limit)."""
    service.rate_limit = RateLimit(30.0, burst=5.0)
    expected = mixed_jobs(service, 300, lambda index: 1.0 + (index % 5) * 0.5)
    async with fleet_of(redis_url, service, 3) as fleet:
        assert all(await fleet.waits.submit(list(expected)))
        await eventually(lambda: _at_least(fleet, len(expected)), "every outcome", within=100)
        await eventually(lambda: delivered_once(fleet.waits, len(expected)), "each delivered once")
        outcomes = await fleet.outcomes()
        calls = await fleet.calls()
        shared = await fleet.redis.hgetall(f"jobpoll:{fleet.queue_name}:rate")
    for job_id, kind in expected.items():
        result = load_result(outcomes[job_id])
        assert ("ok" if result.ok else type(result.error).__name__) == kind, outcomes[job_id]
    assert sorted(job_id for job_id, _attempt in calls) == sorted(expected)  # each called once
    assert int(shared[b"cuts"]) >= 1
    assert float(shared[b"peak"]) < 2 * 30.0


EXAMPLES = Path(__file__).parent.parent / "examples"


async def test_the_example_app_runs_as_the_readme_says(
    redis_url: str, service: FakeJobsService
) -> None:
    """`saq saq_app.settings` runs the waits, `python saq_app.py ids...` submits and prints
    each outcome, and the worker's `job_ended` sees each job once; the workers reach the
    service that CDQ_BASE_URL names, as everything else of jobpoll does."""
    ok = service.add_job(duration=1.0, final_status="FINISHED")
    failed = service.add_job(duration=1.0, final_status="FAILED")
    env = {
        **os.environ,
        "REDIS_URL": redis_url.rsplit("/", 1)[0] + "/1",  # the example's queue name is fixed
        "CDQ_BASE_URL": service.base_url,
        "CDQ_API_KEY": service.api_key,
    }
    worker = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "saq", "saq_app.settings"],
        cwd=EXAMPLES,
        env=env,
        stdout=PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        app = await asyncio.create_subprocess_exec(
            sys.executable, "saq_app.py", ok, failed, cwd=EXAMPLES, env=env, stdout=PIPE
        )
        try:
            stdout, _ = await asyncio.wait_for(app.communicate(), 60)
        finally:
            if app.returncode is None:
                app.kill()
                await app.wait()
        assert app.returncode == 0
    finally:
        worker.send_signal(signal.SIGTERM)
        worker_out, _ = await asyncio.wait_for(worker.communicate(), 30)
    printed = sorted(stdout.decode().splitlines())
    assert printed == sorted([f"{ok} ok", f"{failed} job {failed!r} ended FAILED at 100%"])
    ended = [line for line in worker_out.decode().splitlines() if line.startswith("ended:")]
    assert sorted(ended) == sorted(f"ended: {line}" for line in printed)


def _job(status: str = "FAILED") -> Job:
    return Job(
        id="35f23c03-1c22-45fe-9484-3ffe769325de",
        created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        user="someone",
        progress=40,
        status=JobStatus.parse(status),
        raw_status=status,
    )


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(None, id="ok"),
        pytest.param(JobFailedError(_job()), id="failed"),
        pytest.param(
            WaitTimeout(
                "35f23c03-1c22-45fe-9484-3ffe769325de",
                timeout=60.0,
                job=_job("RUNNING"),
                last_error=ServiceUnavailable(503, retry_after=7.0),
            ),
            id="timeout",
        ),
        pytest.param(NotFound(404, job_id="x", message="no such job"), id="not-found"),
        pytest.param(TransportError("reset", reached=True), id="transport"),
        pytest.param(DecodeError("bad", field="progress", snippet="{}"), id="decode"),
    ],
)
def test_results_travel_as_json(error: JobPollError | None) -> None:
    """A `JobResult` through JSON comes back equal in what it says: job, error class,
    message and attributes."""
    # As a wait makes them: an error that carries a job carries the result's own.
    job = getattr(error, "job", None) or _job("RUNNING")
    result = JobResult("35f23c03-1c22-45fe-9484-3ffe769325de", job, error)
    back = load_result(json.loads(json.dumps(result_to_json(result, polls=3))))
    assert back.job_id == result.job_id
    assert back.job == result.job
    assert back.ok == result.ok
    if error is not None:
        assert type(back.error) is type(error)
        assert str(back.error) == str(error)
        assert back.error is not None
        for name, value in vars(error).items():
            got = getattr(back.error, name)
            if isinstance(value, JobPollError):
                assert type(got) is type(value)
                assert str(got) == str(value)
            else:
                assert got == value


# What a sweep killed half-way leaves: the link out of SAQ's queue, and nobody to put it back.
# Only a link still scheduled (its score not 0) is taken, so no worker holds it.
# Loses a waiting wait's place: its entry in the parked set (KEYS[1], ARGV[1] its job id).
_LOSE_PARKED_WAIT = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
"""


async def test_a_link_lost_by_the_queue_is_mended(redis_url: str, service: FakeJobsService) -> None:
    """A waiting wait that vanished from the queue (from the parked set here; a link from SAQ's
    queue as well, its sweep killed between taking a dead worker's job out and putting it
    back) is enqueued again by the workers, and ends."""
    job_id = service.add_job(duration=math.inf)  # running until a link of it was lost
    async with fleet_of(redis_url, service, 1) as fleet:
        queue = fleet.waits.queue
        lose = queue.redis.register_script(_LOSE_PARKED_WAIT)
        assert await fleet.waits.submit([job_id]) == [True]
        lost = False

        async def lose_one() -> bool:
            nonlocal lost
            parked = f"jobpoll:{fleet.queue_name}:parked"
            lost = bool(await lose(keys=[parked], args=[job_id]))
            return lost

        await eventually(lose_one, "a parked wait to lose")
        service.set_job(job_id, status="FINISHED", progress=100)
        result = await asyncio.wait_for(fleet.waits.result(job_id), 60)
        assert result.ok
        await eventually(lambda: delivered_once(fleet.waits, 1), "delivered once")


async def test_a_worker_with_a_wrong_key_ends_no_wait(
    redis_url: str, service: FakeJobsService
) -> None:
    """A worker whose key is refused (401) hands its waits on unpolled instead of ending them
    with an `Unauthorized` outcome, and the submitter's `result()` raises that `Unauthorized`
    meanwhile; once a worker with the right key has polled the wait, `result()` waits for
    the outcome again, and gets it."""
    job_id = service.add_job(duration=math.inf)  # it ends when the test says so
    async with fleet_of(redis_url, service, 0) as fleet:
        # One link at a time: Redis hands queued links to the longest-waiting worker first.
        fleet.start(1, api_key="fake-wrong", concurrency=1)
        await fleet.ready()
        assert await fleet.waits.submit([job_id]) == [True]
        with pytest.raises(Unauthorized) as refused:
            await asyncio.wait_for(fleet.waits.result(job_id), 60)
        assert refused.value.__notes__ == [
            f"met by a worker polling job {job_id}; its wait goes on"
        ]
        await eventually(
            lambda: _steps_at_least(fleet, "w0", "held", 2), "the wait held twice, unpolled"
        )
        assert await fleet.outcomes() == {}
        wrong = fleet.processes[0]
        wrong.send_signal(signal.SIGTERM)
        await asyncio.to_thread(wrong.wait, 30)
        fleet.start(1)
        await eventually(lambda: _steps_at_least(fleet, "w1", "polled", 1), "a poll", 90)
        service.set_job(job_id, status="FINISHED", progress=100)
        result = await asyncio.wait_for(fleet.waits.result(job_id), 60)
    assert result.ok


async def test_a_server_spelling_the_id_in_another_case_ends_the_wait(
    redis_url: str, service: FakeJobsService
) -> None:
    """A service answering the job with its id upper-cased (the same job): each link
    checkpoints and hands over to the next, and the wait ends with the job's outcome, never
    failing its links and starting over from the first."""
    job_id = service.add_job(duration=3600)
    service.inject(Patch({"id": job_id.upper()}), job_id=job_id, times=None)
    async with fleet_of(redis_url, service, 1) as fleet:
        assert await fleet.waits.submit([job_id]) == [True]
        await eventually(lambda: _steps_at_least(fleet, "w0", "polled", 2), "two links handed on")
        service.set_job(job_id, status="FINISHED", progress=100)
        result = await asyncio.wait_for(fleet.waits.result(job_id), 45)
    assert result.ok
    assert result.job_id == job_id


async def _steps_at_least(fleet: Fleet, name: str, kind: str, count: int) -> bool:
    return (await fleet.steps(name)).get(kind, 0) >= count


def test_settings_are_checked() -> None:
    """A queue that is not on Redis, a timeout or a ceiling out of range, or an outcome
    function missing from the worker's functions are refused at once."""
    from saq import Queue

    with pytest.raises(TypeError, match="RedisQueue"):
        make_waits_for(object())
    queue = Queue.from_url("redis://127.0.0.1:1", name="checks")
    with pytest.raises(ValueError, match="poll_timeout"):
        SaqWaits(queue, on_outcome=None, poll_timeout=0.5)
    with pytest.raises(ValueError, match="max_rate"):
        SaqWaits(queue, on_outcome=None, max_rate=0)
    waits = SaqWaits(queue, on_outcome="job_ended")
    with pytest.raises(ValueError, match="job_ended"):
        waits.worker_settings(client=lambda: None, functions=[])

    async def job_ended(ctx: dict[str, Any], *, result: dict[str, Any]) -> None:
        pass

    settings = waits.worker_settings(client=lambda: None, functions=[("job_ended", job_ended)])
    names = [entry[0] for entry in settings["functions"]]
    assert names == ["jobpoll.poll", "job_ended"]


def test_a_queue_that_does_not_write_json_is_refused_with_a_clear_error() -> None:
    """jobpoll's scripts write each link as SAQ's default serializer does: a queue with its own
    (pickle here) is refused at once with a `ConfigurationError` that says so."""
    from saq import Queue

    queue = Queue.from_url(
        "redis://127.0.0.1:1", name="pickled", dump=pickle.dumps, load=pickle.loads
    )
    with pytest.raises(ConfigurationError, match="as JSON"):
        SaqWaits(queue, on_outcome=None)


def make_waits_for(queue: Any) -> SaqWaits:
    return SaqWaits(queue, on_outcome=None)

"""`wait_for_jobs` against the fake service: every job reported once, bounded, isolated, clean.

Most tests run in virtual time (the service and the policy share one `VirtualClock`); those
that need requests to stay in flight use the service's `Slow` fault, which waits in real time.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import random
import uuid

import aiohttp
import attrs
import pytest
from support import CrowdService, no_other_tasks, until, until_idle

from jobpoll import (
    ConfigurationError,
    DecodeError,
    InvalidJobId,
    Job,
    JobFailedError,
    JobResult,
    JobsClient,
    JobStatus,
    JobsWait,
    NotFound,
    PollPolicy,
    WaitTimeout,
    wait_for_job,
    wait_for_jobs,
)
from jobpoll.testing import Body, FakeJobsService, HttpError, Patch, Slow, VirtualClock

OUTCOMES = ["FINISHED", "FAILED", "DIED", "CANCELED", "COULDNT_START", "ARCHIVED"]


@pytest.fixture
def policy(clock: VirtualClock) -> PollPolicy:
    """The default policy in virtual time, with a seeded jitter."""
    return PollPolicy(clock=clock, sleep=clock.sleep, rng=random.Random(5).random)


async def results_of(fanout: JobsWait) -> list[JobResult]:
    async with fanout:
        return [result async for result in fanout]


# Every job reported once -------------------------------------------------------------------


async def test_thousands_of_mixed_jobs_are_each_reported_once(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """2000 jobs of every outcome, plus missing and broken ones, each give exactly one result
    with the error `wait_for_job` would have raised."""
    rnd = random.Random(1)
    expected: dict[str, type[Exception] | None] = {}
    for _ in range(2000):
        final = rnd.choice(OUTCOMES)
        job_id = service.add_job(duration=rnd.uniform(0, 20), final_status=final)
        expected[job_id] = JobFailedError if JobStatus(final).failed else None
    for job_id in rnd.sample(sorted(expected), 20):
        service.inject(Patch({"progress": -5}), job_id=job_id)
        expected[job_id] = DecodeError
    for _ in range(20):
        expected[str(uuid.uuid4())] = NotFound  # never created

    results = await results_of(wait_for_jobs(client, list(expected), policy=policy))

    assert collections.Counter(result.job_id for result in results) == dict.fromkeys(expected, 1)
    for result in results:
        want = expected[result.job_id]
        if want is None:
            assert result.ok
            assert result.job is not None
            assert result.job.status.is_terminal
        else:
            assert isinstance(result.error, want)
            assert not result.ok
            assert result.error.job_id == result.job_id
    failed = [result for result in results if isinstance(result.error, JobFailedError)]
    assert failed
    assert all(result.error.job == result.job for result in failed)  # type: ignore[union-attr]
    assert all(result.job is None for result in results if isinstance(result.error, NotFound))


async def test_results_come_in_the_order_jobs_end(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """The iterator yields each job when it ends: the quickest first."""
    slow, quick, middle = (service.add_job(duration=d) for d in (600, 5, 60))
    results = await results_of(wait_for_jobs(client, [slow, quick, middle], policy=policy))
    assert [result.job_id for result in results] == [quick, middle, slow]


async def test_awaiting_gives_every_result_in_the_order_given(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """`await wait_for_jobs(...)` returns all results, in the order of the ids given."""
    ids = [service.add_job(duration=d) for d in (300, 1, 30)]
    ids.append(service.add_job(duration=10, final_status="FAILED"))
    results = await wait_for_jobs(client, ids, policy=policy)
    assert [result.job_id for result in results] == ids
    assert [result.ok for result in results] == [True, True, True, False]
    assert no_other_tasks()


async def test_duplicate_ids_are_polled_and_reported_once(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """The same job given three times (once as a UUID) is one result, from one wait's polls."""
    exact = attrs.evolve(policy, jitter=0)
    job_id, other = service.add_job(duration=50), service.add_job(duration=50)
    results = await wait_for_jobs(
        client, [job_id, other, uuid.UUID(job_id), job_id, other], policy=exact
    )
    assert [result.job_id for result in results] == [job_id, other]
    twin = service.add_job(duration=50)
    alone = wait_for_job(client, twin, policy=exact)
    await alone
    assert alone.polls > 3
    assert service.request_count(job_id) == service.request_count(other) == alone.polls


async def test_no_ids_gives_no_results(client: JobsClient) -> None:
    """An empty list of ids ends at once, without a request."""
    assert await wait_for_jobs(client, []) == []
    assert [result async for result in wait_for_jobs(client, iter(()))] == []


async def test_a_job_ends_as_it_would_alone(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock, policy: PollPolicy
) -> None:
    """A job in a fan-out is polled as often, and ends as late, as when waited for alone."""
    policy = attrs.evolve(policy, jitter=0)
    job_id = service.add_job(duration=200)
    start = clock()
    alone = wait_for_job(client, job_id, policy=policy)
    await alone
    took_alone = clock() - start
    again = service.add_job(duration=200)
    start = clock()
    (result,) = await wait_for_jobs(client, [again], policy=policy)
    assert result.ok
    assert result.job is not None
    assert result.job.progress == 100
    assert service.request_count(again) == alone.polls
    assert clock() - start == pytest.approx(took_alone, abs=15)


# Isolation ---------------------------------------------------------------------------------


async def test_one_bad_body_does_not_touch_its_neighbours(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """A job answered with an invalid field ends with a `DecodeError`; the jobs beside it,
    polled at the same moments, all finish."""
    ids = [service.add_job(duration=30) for _ in range(50)]
    service.inject(Patch({"status": 7}), job_id=ids[25])
    results = {r.job_id: r for r in await wait_for_jobs(client, ids, policy=policy)}
    bad = results.pop(ids[25])
    assert isinstance(bad.error, DecodeError)
    assert bad.error.field == "status"
    assert all(result.ok for result in results.values())


async def test_transient_garbage_is_ridden_out_per_job(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """An HTML page for one job is polled again, as `wait_for_job` would; all finish."""
    ids = [service.add_job(duration=30) for _ in range(10)]
    service.inject(Body("<html>proxy error</html>", content_type="text/html"), job_id=ids[3])
    results = await wait_for_jobs(client, ids, policy=policy)
    assert all(result.ok for result in results)


async def test_timeout_reports_the_unfinished_jobs(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock, policy: PollPolicy
) -> None:
    """With `timeout`, the jobs still running at the deadline are results with a
    `WaitTimeout` carrying their last snapshot; the others finished in time."""
    quick = [service.add_job(duration=10) for _ in range(5)]
    slow = [service.add_job(duration=3600) for _ in range(5)]
    start = clock()
    results = await wait_for_jobs(client, quick + slow, policy=policy, timeout=120)
    assert clock() - start == pytest.approx(120)
    assert all(result.ok for result in results[:5])
    for result in results[5:]:
        assert isinstance(result.error, WaitTimeout)
        assert result.error.timeout == 120
        assert result.job is not None
        assert result.job.status is JobStatus.RUNNING
        assert result.error.job == result.job


async def test_a_job_never_polled_before_the_deadline_times_out_without_a_snapshot(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """When the window is full until the deadline, a job not polled yet still gets a result:
    a `WaitTimeout` without a job."""
    ids = [service.add_job(duration=3600) for _ in range(3)]
    service.inject(Slow(0.2), times=None)
    real = PollPolicy()  # real time: the slow answers must outlast the deadline
    results = await wait_for_jobs(client, ids, policy=real, timeout=0.1, max_in_flight=1)
    assert [type(result.error) for result in results] == [WaitTimeout] * 3
    assert results[-1].job is None
    assert no_other_tasks()  # at once, not eventually: jobpoll left nothing running
    await until_idle(service)


# The bound on requests in flight -----------------------------------------------------------


@pytest.mark.parametrize("bound", [1, 3, 8])
async def test_requests_in_flight_never_exceed_the_bound(bound: int) -> None:
    """However many jobs wait, the server never sees more than `max_in_flight` requests at
    once, and does see that many (the bound is used, not just respected)."""
    async with (
        CrowdService(bound) as service,
        JobsClient(service.api_key, base_url=service.base_url, max_connections=50) as client,
    ):
        ids = [service.add_job(duration=0) for _ in range(40)]
        service.inject(Slow(0.01), times=None)
        fanout = wait_for_jobs(client, ids, max_in_flight=bound)
        seen = []
        async with fanout:
            async for result in fanout:
                assert result.ok
                seen.append(fanout.in_flight)
    assert service.peak_in_flight == bound
    assert max(seen) <= bound


async def test_the_default_bound_is_the_clients_pool() -> None:
    """Without `max_in_flight`, as many requests go out as the client has connections."""
    async with (
        CrowdService(4) as service,
        JobsClient(service.api_key, base_url=service.base_url, max_connections=4) as client,
    ):
        ids = [service.add_job(duration=0) for _ in range(30)]
        service.inject(Slow(0.01), times=None)
        assert client.pool_size == 4
        assert all(result.ok for result in await wait_for_jobs(client, ids))
    assert service.peak_in_flight == 4


@pytest.mark.parametrize(
    ("limit", "per_host", "pool"),
    [
        pytest.param(10, 0, 10, id="limit"),
        pytest.param(100, 6, 6, id="per-host"),
        pytest.param(0, 0, 100, id="unlimited"),
    ],
)
async def test_the_pool_of_a_callers_session(limit: int, per_host: int, pool: int) -> None:
    """With a caller's session, the pool is its connector's limit (the smaller one set), or
    the client's `max_connections` when it has none."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=per_host)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = JobsClient("key", base_url="http://127.0.0.1:1", session=session)
        assert client.pool_size == pool


# Gentle with the server --------------------------------------------------------------------


async def test_a_503_storm_slows_every_waiter_and_loses_nothing(
    service: FakeJobsService,
    client: JobsClient,
    clock: VirtualClock,
    policy: PollPolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the server answers 503, the client's rate falls (halving with each 503 to a
    request sent since the last cut, from the second in a row); once it recovers every job
    finishes."""
    ids = [service.add_job(duration=600) for _ in range(200)]
    fanout = wait_for_jobs(client, ids, policy=policy, max_in_flight=8)
    with caplog.at_level(logging.INFO, logger="jobpoll"):
        async with fanout:
            first = await anext(fanout)  # noqa: F841 - polls are now under way
            storm_start = clock()
            service.inject(HttpError(503), times=40)
            rest = [result async for result in fanout]
    assert len(rest) + 1 == 200
    assert all(result.ok for result in rest)
    times = sorted(r.at for r in service.recent_requests if r.http_status == 503)
    assert len(times) == 40
    cuts = [
        float(m.rsplit("held to ", 1)[1].split()[0])
        for r in caplog.records
        if "held to" in (m := r.getMessage())
    ]
    assert len(cuts) >= 5
    assert cuts[-1] < cuts[0]
    # Alone, each of the 200 waiters would have met several 503s; here most met none.
    assert storm_start < times[0] + 1


async def test_retry_after_delays_its_request_and_holds_the_rate_not_the_fleet(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock, policy: PollPolicy
) -> None:
    """A 429 with `Retry-After: 20` for one job holds that job's next poll for 20 s; the
    other jobs go on polling meanwhile, at the rate the client cut to."""
    ids = [service.add_job(duration=3600) for _ in range(60)]
    service.inject(HttpError(429, retry_after=20), job_id=ids[0])
    fanout = wait_for_jobs(client, ids, policy=policy, max_in_flight=4)
    async with fanout:
        await until_requests(service, fanout, 130)
    requests = list(service.recent_requests)
    throttled_at = next(r.at for r in requests if r.http_status == 429)
    again = [r.at for r in requests if r.job_id == ids[0] and r.at > throttled_at]
    others = [r.at for r in requests if r.job_id != ids[0] and r.at > throttled_at]
    assert again
    assert min(again) >= throttled_at + 20
    assert len([at for at in others if at < throttled_at + 20]) >= 10  # not frozen
    assert client.rate < math.inf


async def until_requests(service: FakeJobsService, fanout: JobsWait, count: int) -> None:
    """Iterate the fan-out (in a task) until the service has seen `count` requests."""
    task = asyncio.create_task(anext(fanout))
    await until(lambda: len(service.recent_requests) >= count or task.done())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_max_in_flight_bounds_the_polls_out_at_once(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """`max_in_flight` bounds the connections, after the client's slow start as before it."""
    ids = [service.add_job(duration=0) for _ in range(60)]
    service.inject(Slow(0.005), times=None)
    results = await wait_for_jobs(client, ids, policy=policy, max_in_flight=12)
    assert all(result.ok for result in results)
    assert service.peak_in_flight <= 12


async def test_a_stray_503_cuts_nothing_two_in_a_row_cut_the_rate(
    caplog: pytest.LogCaptureFixture, clock: VirtualClock
) -> None:
    """A 503 among answers that were not throttled (a server refusing a small share of
    requests) leaves the client's rate alone; two in a row cut it."""
    fast = PollPolicy(initial=0.01, max_interval=0.05, clock=clock, sleep=clock.sleep)
    said: list[list[str]] = []
    for in_a_row in (1, 2):
        async with (
            FakeJobsService(clock=clock) as service,
            JobsClient(
                service.api_key, base_url=service.base_url, clock=clock, sleep=clock.sleep
            ) as client,
        ):
            ids = [service.add_job(duration=0) for _ in range(60)]
            results = await wait_for_jobs(client, ids[:10], policy=fast, max_in_flight=1)
            service.inject(HttpError(503), times=in_a_row)
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="jobpoll"):
                results += await wait_for_jobs(client, ids[10:], policy=fast, max_in_flight=1)
            assert all(result.ok for result in results)
            said.append([m for r in caplog.records if "held to" in (m := r.getMessage())])
    assert said[0] == []
    assert len(said[1]) == 1
    assert said[1][0].startswith("the server answered 503; this client's requests are held to")


# Progress for many jobs --------------------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
async def test_on_update_sees_every_jobs_changes(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy, asynchronous: bool
) -> None:
    """`on_update` gets what `wait_for_job` would yield for each job: first, changes, last."""
    ids = [service.add_job(duration=d) for d in (20, 40, 60)]
    updates: dict[str, list[Job]] = collections.defaultdict(list)

    def record(job: Job) -> None:
        updates[job.id].append(job)

    async def record_async(job: Job) -> None:
        await asyncio.sleep(0)
        record(job)

    results = await wait_for_jobs(
        client, ids, policy=policy, on_update=record_async if asynchronous else record
    )
    assert all(result.ok for result in results)
    for job_id in ids:
        progress = [job.progress for job in updates[job_id]]
        assert progress[0] == 0
        assert progress[-1] == 100
        assert len(progress) >= 3  # the first, at least one change, the last
        assert progress == sorted(set(progress))  # only changes
        assert updates[job_id][-1].status is JobStatus.FINISHED


async def test_a_failing_on_update_ends_the_fan_out(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """What `on_update` raises is the caller's bug: it ends everything and is raised."""
    ids = [service.add_job(duration=60) for _ in range(5)]

    def broken(job: Job) -> None:
        if job.progress > 50:
            raise KeyError("bug")

    fanout = wait_for_jobs(client, ids, policy=policy, on_update=broken)
    with pytest.raises(KeyError):
        await fanout
    assert fanout.in_flight == 0
    assert [result async for result in fanout] == []
    assert no_other_tasks()


async def test_counters_tell_overall_progress(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """`total`, `reported` and `polls` let a worker report how far the whole batch is."""
    ids = [service.add_job(duration=d) for d in (5, 50)]
    fanout = wait_for_jobs(client, ids + ids, policy=policy)
    assert (fanout.total, fanout.reported, fanout.polls) == (2, 0, 0)
    async with fanout:
        await anext(fanout)
        assert fanout.reported == 1
        assert repr(fanout).startswith("<JobsWait 1 of 2 jobs reported")
        await anext(fanout)
    assert fanout.reported == 2
    assert fanout.polls == service.request_count()


# Cleanup -----------------------------------------------------------------------------------


async def test_leaving_the_context_early_cancels_the_polls_in_flight(
    service: FakeJobsService, client: JobsClient
) -> None:
    """Leaving `async with` after the first result leaves no task and no request behind."""
    ids = [service.add_job(duration=0) for _ in range(20)]
    service.inject(Slow(5), times=None)
    service.inject(Slow(0), job_id=ids[0])  # one quick answer; the rest hang
    async with wait_for_jobs(client, ids, max_in_flight=6) as fanout:
        first = await anext(fanout)
        assert first.job_id == ids[0]
        assert fanout.in_flight == 6  # the window was filled again before returning
    assert fanout.in_flight == 0
    assert no_other_tasks()  # at once, not eventually: jobpoll left nothing running
    await until_idle(service)
    # Cut off, not waited for: no poll but the first was answered.
    assert {r.job_id for r in service.recent_requests if r.http_status} == {ids[0]}
    assert [result async for result in fanout] == []


async def test_breaking_out_of_a_plain_loop_cleans_up(
    service: FakeJobsService, client: JobsClient
) -> None:
    """`break` out of `async for` without `async with`: once the fan-out is dropped, its
    polls in flight are cancelled and their connections freed."""
    ids = [service.add_job(duration=0) for _ in range(20)]
    service.inject(Slow(5), times=None)
    service.inject(Slow(0), job_id=ids[0])
    async for result in wait_for_jobs(client, ids, max_in_flight=6):
        assert result.ok
        break
    await until_idle(service)
    await until(no_other_tasks)


async def test_cancelling_the_whole_leaves_nothing_and_can_resume(
    service: FakeJobsService, client: JobsClient
) -> None:
    """Cancelling the iterating task propagates, cancels the polls in flight and frees their
    connections; iterating again polls those jobs anew and reports every job once."""
    ids = [service.add_job(duration=0) for _ in range(10)]
    service.inject(Slow(5), times=10)
    fanout = wait_for_jobs(client, ids, max_in_flight=4)
    task = asyncio.create_task(anext(fanout))
    await until(lambda: service.in_flight == 4)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fanout.in_flight == 0
    assert no_other_tasks()  # at once, not eventually: jobpoll left nothing running
    await until_idle(service)
    assert not any(r.http_status for r in service.recent_requests)  # cut off, not waited for
    service.clear_faults()
    async with fanout:
        results = [result async for result in fanout]
    assert sorted(result.job_id for result in results) == sorted(ids)
    assert all(result.ok for result in results)


async def test_cancelled_from_outside_with_a_timeout(
    service: FakeJobsService, client: JobsClient
) -> None:
    """`asyncio.timeout` around the loop cancels cleanly and raises `TimeoutError`."""
    ids = [service.add_job(duration=0) for _ in range(5)]
    service.inject(Slow(5), times=None)
    with pytest.raises(TimeoutError):
        await drain_within(0.1, wait_for_jobs(client, ids))
    assert no_other_tasks()  # at once, not eventually: jobpoll left nothing running
    await until_idle(service)
    assert not any(r.http_status for r in service.recent_requests)  # cut off, not waited for


async def drain_within(seconds: float, fanout: JobsWait) -> None:
    async with asyncio.timeout(seconds), fanout:
        async for _ in fanout:
            pass


async def test_two_tasks_cannot_iterate_one_fan_out(
    service: FakeJobsService, client: JobsClient
) -> None:
    """A second task iterating while the first is inside `__anext__` gets `RuntimeError`."""
    job_id = service.add_job(duration=0)
    service.inject(Slow(5))
    async with wait_for_jobs(client, [job_id]) as fanout:
        task = asyncio.create_task(anext(fanout))
        await until(lambda: service.in_flight == 1)
        with pytest.raises(RuntimeError, match="already being iterated"):
            await anext(fanout)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert no_other_tasks()  # at once, not eventually: jobpoll left nothing running
    await until_idle(service)


async def test_a_closed_client_is_raised_not_reported(
    service: FakeJobsService, policy: PollPolicy
) -> None:
    """Polling with a closed client is the caller's bug, raised as `RuntimeError`."""
    job_id = service.add_job(duration=0)
    client = JobsClient(service.api_key, base_url=service.base_url)
    await client.aclose()
    with pytest.raises(RuntimeError):
        await wait_for_jobs(client, [job_id], policy=policy)
    assert no_other_tasks()


# Arguments ---------------------------------------------------------------------------------


async def test_an_invalid_id_is_refused_at_once_and_named(client: JobsClient) -> None:
    """An id that could never be sent raises `InvalidJobId` at the call, naming its place."""
    with pytest.raises(InvalidJobId, match=r"job_ids\[2\]: the job id is empty"):
        wait_for_jobs(client, ["a", "b", ""])


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        pytest.param({"job_ids": "abc"}, TypeError, "iterable of job ids", id="one-str"),
        pytest.param({"job_ids": 5}, TypeError, "iterable of job ids", id="int"),
        pytest.param({"max_in_flight": 0}, ConfigurationError, "max_in_flight", id="zero"),
        pytest.param({"max_in_flight": 2.5}, ConfigurationError, "max_in_flight", id="float"),
        pytest.param({"max_in_flight": True}, ConfigurationError, "max_in_flight", id="bool"),
        pytest.param({"timeout": -1}, ConfigurationError, "timeout", id="timeout"),
        pytest.param({"policy": object()}, TypeError, "policy", id="policy"),
        pytest.param({"on_update": 3}, TypeError, "on_update", id="on_update"),
    ],
)
async def test_bad_arguments_are_refused_at_once(
    client: JobsClient, arguments: dict[str, object], error: type[Exception], match: str
) -> None:
    """Wrong arguments raise at the call, before anything is sent."""
    kwargs: dict[str, object] = {"job_ids": ["a"], **arguments}
    with pytest.raises(error, match=match):
        wait_for_jobs(client, **kwargs)  # type: ignore[arg-type]


def test_a_wrong_client_is_refused() -> None:
    """A client that is not a `JobsClient` raises `TypeError`."""
    with pytest.raises(TypeError, match="JobsClient"):
        wait_for_jobs(object(), ["a"])  # type: ignore[arg-type]


def test_results_are_plain_values() -> None:
    """`JobResult` is frozen, compares by value, and `ok` follows `error`."""
    result = JobResult("a", None, NotFound(404, job_id="a"))
    assert not result.ok
    assert JobResult("a", None).ok
    with pytest.raises(AttributeError):
        result.job_id = "b"  # type: ignore[misc]


async def test_a_retry_after_beyond_nanoseconds_is_obeyed_as_alone(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A `Retry-After` of 1e300 s obeyed (a huge `max_retry_after`) queues the job that far
    off, as `wait_for_job` would sleep, instead of failing on its due in nanoseconds."""
    policy = PollPolicy(clock=clock, sleep=clock.sleep, max_retry_after=1e300)
    job_id, other = service.add_job(duration=10), service.add_job(duration=10)
    service.inject(HttpError(503, retry_after="1e300"), job_id=job_id)
    results = await wait_for_jobs(client, [job_id, other], policy=policy)
    assert [result.ok for result in results] == [True, True]
    assert service.request_count(job_id) == 2

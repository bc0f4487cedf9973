"""`wait_for_job` against the fake service: outcomes, progress, failures, deadlines, cleanup.

Most tests run in virtual time: the service and the policy share one `VirtualClock`, so jobs of
hours are waited for in milliseconds and every delay is on record in `clock.sleeps`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import pickle

import aiohttp
import pytest
from support import no_other_tasks, until, until_idle

from jobpoll import (
    BadRequest,
    ConfigurationError,
    DecodeError,
    Forbidden,
    InvalidJobId,
    Job,
    JobFailedError,
    JobPollError,
    JobsClient,
    JobStalled,
    JobStatus,
    JobWait,
    NotAcceptable,
    NotFound,
    PollPolicy,
    RateLimited,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    WaitTimeout,
    wait_for_job,
)
from jobpoll._rate import SLACK
from jobpoll.testing import (
    Body,
    Drop,
    FakeJobsService,
    HttpError,
    Patch,
    Slow,
    VirtualClock,
)

FAILURES = [JobStatus.FAILED, JobStatus.DIED, JobStatus.COULDNT_START, JobStatus.CANCELED]
#: A blind schedule of many distinct steps before its cap: 1 s growing by half to 30 s (0.1's
#: defaults; the defaults now double from 2 s, see tests/test_policy.py). These tests are about
#: how a wait follows its schedule, so their policies say `initial=1, factor=1.5`, and
#: `clock.sleeps` holds this schedule without jitter.
SCHEDULE = [1, 1.5, 2.25, 3.375, 5.0625, 7.59375, 11.390625, 17.0859375, 25.62890625, 30, 30]


@pytest.fixture
def policy(clock: VirtualClock) -> PollPolicy:
    """The blind schedule `SCHEDULE`, in virtual time and without jitter, so delays are exact
    (tests/test_pace.py covers the progress-aware one)."""
    return PollPolicy(
        initial=1, factor=1.5, clock=clock, sleep=clock.sleep, jitter=0, progress_aware=False
    )


async def collect(wait: JobWait) -> list[Job]:
    return [job async for job in wait]


# Outcomes -----------------------------------------------------------------------------------


async def test_await_returns_the_finished_job(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy, clock: VirtualClock
) -> None:
    """Awaiting polls on the policy's schedule until FINISHED and returns that snapshot."""
    job_id = service.add_job(duration=20)
    job = await wait_for_job(client, job_id, policy=policy)
    assert (job.id, job.status, job.progress) == (job_id, JobStatus.FINISHED, 100)
    assert clock.sleeps == SCHEDULE[:6]  # polls at 0, 1, 2.5, 4.75, 8.125, 13.1875, 20.78
    assert service.request_count(job_id) == 7


async def test_first_poll_is_immediate(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy, clock: VirtualClock
) -> None:
    """A job already over is reported after one poll and no sleep."""
    job_id = service.add_job(duration=0)
    assert (await wait_for_job(client, job_id, policy=policy)).succeeded
    assert clock.sleeps == []
    assert service.request_count(job_id) == 1


@pytest.mark.parametrize("status", FAILURES)
async def test_await_raises_for_each_failure_status(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy, status: JobStatus
) -> None:
    """A job that ends in failure raises `JobFailedError` carrying the final snapshot."""
    job_id = service.add_job(duration=10, final_status=status)
    with pytest.raises(JobFailedError, match=f"ended {status.value}") as caught:
        await wait_for_job(client, job_id, policy=policy)
    assert caught.value.job.status is status
    assert caught.value.job_id == job_id
    assert not isinstance(caught.value, asyncio.CancelledError)


@pytest.mark.parametrize("status", FAILURES)
async def test_iterator_ends_quietly_on_failure(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy, status: JobStatus
) -> None:
    """Iterating, a failed job is the last item, not an exception."""
    job_id = service.add_job(duration=10, final_status=status)
    jobs = await collect(wait_for_job(client, job_id, policy=policy))
    assert jobs[-1].status is status
    assert jobs[-1].failed
    assert not any(job.is_terminal for job in jobs[:-1])


async def test_archived_is_an_outcome_not_a_failure(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """ARCHIVED ends the wait and is returned: over, outcome not reported."""
    job_id = service.add_job(duration=5, final_status=JobStatus.ARCHIVED)
    job = await wait_for_job(client, job_id, policy=policy)
    assert job.status is JobStatus.ARCHIVED
    assert not job.succeeded
    assert not job.failed


@pytest.mark.parametrize("running_status", ["UNKNOWN", "PAUSED_FOR_AUDIT"])
async def test_unknown_statuses_keep_polling(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy, running_status: str
) -> None:
    """UNKNOWN, and a status jobpoll has never heard of, are not terminal: polling goes on."""
    job_id = service.add_job(duration=30, running_status=running_status, progress=None)
    jobs = await collect(wait_for_job(client, job_id, policy=policy))
    assert [(job.status, job.raw_status) for job in jobs] == [
        (JobStatus.UNKNOWN, running_status),
        (JobStatus.FINISHED, "FINISHED"),
    ]
    assert service.request_count(job_id) > 2


# Progress -----------------------------------------------------------------------------------


async def test_iterator_yields_each_change_and_the_end_once(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """Snapshots come at the first poll and on each status or progress change; the terminal
    one comes once, last."""
    job_id = service.add_job(duration=300, queued=10)
    wait = wait_for_job(client, job_id, policy=policy)
    jobs = await collect(wait)
    assert jobs[0].status is JobStatus.SCHEDULED
    assert jobs[-1].status is JobStatus.FINISHED
    assert [job.is_terminal for job in jobs].count(True) == 1
    running = [job.progress for job in jobs if job.status is JobStatus.RUNNING]
    assert len(running) > 3  # progress-only changes are updates too
    assert running == sorted(running)
    pairs = itertools.pairwise(jobs)
    assert all((a.raw_status, a.progress) != (b.raw_status, b.progress) for a, b in pairs)
    assert wait.polls > len(jobs)  # polls that saw no change yielded nothing
    assert wait.done


async def test_unchanged_polls_yield_nothing(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy, clock: VirtualClock
) -> None:
    """A job that sits still is polled on schedule but reported once."""
    job_id = service.add_job(duration=3600)
    service.set_job(job_id, status=JobStatus.RUNNING, progress=10)
    wait = wait_for_job(client, job_id, policy=policy)
    assert (await anext(wait)).progress == 10
    waiting = asyncio.create_task(anext(wait))
    await until(lambda: service.request_count(job_id) >= 6, step=0)
    assert not waiting.done()
    service.set_job(job_id, status=JobStatus.FINISHED, progress=100)
    assert (await waiting).status is JobStatus.FINISHED
    assert clock.sleeps == SCHEDULE[: len(clock.sleeps)]


async def test_progress_going_backwards_is_reported(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """A job whose progress drops (a restarted stage) yields the lower value."""
    job_id = service.add_job(duration=3600)
    service.set_job(job_id, status=JobStatus.RUNNING, progress=50)
    wait = wait_for_job(client, job_id, policy=policy)
    assert (await anext(wait)).progress == 50
    service.set_job(job_id, status=JobStatus.RUNNING, progress=30)
    assert (await anext(wait)).progress == 30
    service.set_job(job_id, status=JobStatus.FINISHED, progress=100)
    assert (await anext(wait)).succeeded
    with pytest.raises(StopAsyncIteration):
        await anext(wait)


async def test_on_update_sees_every_snapshot_while_awaiting(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """`on_update` gets what the iterator would yield, for code that only awaits."""
    job_id = service.add_job(duration=120)
    expected = await collect(wait_for_job(client, job_id, policy=policy))
    service.add_job(job_id, duration=120)  # the same script again, from the same clock time
    seen: list[Job] = []
    job = await wait_for_job(client, job_id, policy=policy, on_update=seen.append)
    assert seen[-1] == job
    assert [(j.status, j.progress) for j in seen] == [(j.status, j.progress) for j in expected]


async def test_on_update_may_be_a_coroutine_function(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """An async `on_update` is awaited before the wait goes on."""
    job_id = service.add_job(duration=60)
    seen: list[int] = []

    async def report(job: Job) -> None:
        await asyncio.sleep(0)
        seen.append(job.progress)

    await wait_for_job(client, job_id, policy=policy, on_update=report)
    assert seen[0] == 0
    assert seen[-1] == 100


async def test_on_update_errors_end_the_wait(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """What `on_update` raises propagates; the wait is then over."""
    job_id = service.add_job(duration=60)

    def broken(job: Job) -> None:
        raise KeyError(job.id)

    wait = wait_for_job(client, job_id, policy=policy, on_update=broken)
    with pytest.raises(KeyError):
        await wait
    assert wait.done
    assert service.request_count(job_id) == 1


# Transient failures -------------------------------------------------------------------------


async def test_503_burst_is_ridden_out_with_backoff(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy, clock: VirtualClock
) -> None:
    """A burst of 503s shorter than `max_failures` delays the answer, on the schedule (the
    last poll a little later: the client's rate, halved by each 503 from the second in a
    row, spaces it 4 s after the one before)."""
    job_id = service.add_job(duration=0)
    service.inject(HttpError(503), job_id=job_id, times=4)
    wait = wait_for_job(client, job_id, policy=policy)
    assert (await wait).succeeded
    assert clock.sleeps == pytest.approx([*SCHEDULE[:4], 4 - SCHEDULE[3] - SLACK])
    assert wait.polls == 5


async def test_too_many_failures_in_a_row_raise_the_last(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """At `max_failures` failed polls in a row, the last error is raised."""
    job_id = service.add_job(duration=0)
    service.inject(HttpError(503, message="down for maintenance"), job_id=job_id, times=None)
    policy = PollPolicy(
        initial=1, factor=1.5, clock=clock, sleep=clock.sleep, jitter=0, max_failures=3
    )
    with pytest.raises(ServiceUnavailable, match="down for maintenance"):
        await wait_for_job(client, job_id, policy=policy)
    assert service.request_count(job_id) == 3
    assert clock.sleeps == SCHEDULE[:2]


async def test_failure_count_resets_on_an_answer(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """Failures only count in a row: an answer in between starts the count again."""
    job_id = service.add_job(duration=100)
    for _ in range(3):
        service.inject(HttpError(502), job_id=job_id, times=2)
        service.inject(Patch({}), job_id=job_id)  # one normal answer
    policy = PollPolicy(clock=clock, sleep=clock.sleep, jitter=0, max_failures=3)
    assert (await wait_for_job(client, job_id, policy=policy)).succeeded


@pytest.mark.parametrize("as_date", [False, True], ids=["seconds", "http-date"])
async def test_429_retry_after_is_honoured(
    service: FakeJobsService,
    client: JobsClient,
    policy: PollPolicy,
    clock: VirtualClock,
    as_date: bool,
) -> None:
    """429 with Retry-After (seconds or an HTTP-date) waits as long as the server asks."""
    job_id = service.add_job(duration=0)
    service.inject(HttpError(429, retry_after=45, as_date=as_date), job_id=job_id)
    assert (await wait_for_job(client, job_id, policy=policy)).succeeded
    assert clock.sleeps == [45]


async def test_retry_after_is_capped(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A Retry-After beyond `max_retry_after` is cut to it."""
    job_id = service.add_job(duration=0)
    service.inject(HttpError(503, retry_after=86400), job_id=job_id)
    policy = PollPolicy(clock=clock, sleep=clock.sleep, jitter=0, max_retry_after=120)
    assert (await wait_for_job(client, job_id, policy=policy)).succeeded
    assert clock.sleeps == [120]


async def test_429_without_retry_after_backs_off(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy, clock: VirtualClock
) -> None:
    """A 429 that names no wait is retried on the schedule, and no sooner than the client's
    rate allows (a request a second after the first, every 2 s after the second)."""
    job_id = service.add_job(duration=0)
    service.inject(HttpError(429), job_id=job_id, times=2)
    assert (await wait_for_job(client, job_id, policy=policy)).succeeded
    assert clock.sleeps == pytest.approx([*SCHEDULE[:2], 2 - SCHEDULE[1] - SLACK])


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Drop(), id="dropped-before-answer"),
        pytest.param(Drop(mid_body=True), id="dropped-mid-body"),
        pytest.param(
            Body("<html><h1>502 Bad Gateway</h1></html>", content_type="text/html"), id="html-page"
        ),
        pytest.param(Body('{"id": "trunc', content_type="application/json"), id="truncated"),
        pytest.param(HttpError(500), id="500"),
        pytest.param(HttpError(504), id="504"),
    ],
)
async def test_transient_faults_are_retried(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy, fault: object
) -> None:
    """Dropped connections, a proxy's HTML page, truncated JSON and 5xx are polled again."""
    job_id = service.add_job(duration=0)
    service.inject(fault, job_id=job_id, times=2)  # type: ignore[arg-type]
    assert (await wait_for_job(client, job_id, policy=policy)).succeeded


async def test_slow_answer_past_the_request_timeout_is_retried(
    service: FakeJobsService, policy: PollPolicy
) -> None:
    """A response slower than the client's timeout is a transport error, polled again."""
    job_id = service.add_job(duration=0)
    service.inject(Slow(5), job_id=job_id)
    async with JobsClient(service.api_key, base_url=service.base_url, total_timeout=0.2) as fast:
        # A kept-alive connection first: so the first poll is written at once, and reaches the
        # service (taking the slow answer) whatever the load, rather than timing out while
        # still connecting and leaving the slow answer to the second poll.
        await fast.get_job(service.add_job(duration=0))
        wait = wait_for_job(fast, job_id, policy=policy)
        assert (await wait).succeeded
    assert wait.polls == 2
    await until_idle(service)


# Errors raised at once ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, BadRequest), (403, Forbidden), (406, NotAcceptable), (404, NotFound)],
)
async def test_non_transient_errors_are_raised_at_once(
    service: FakeJobsService,
    client: JobsClient,
    policy: PollPolicy,
    status: int,
    error: type[JobPollError],
) -> None:
    """400, 403, 406, and 404 without a grace, end the wait at the first poll."""
    job_id = service.add_job(duration=60)
    service.inject(HttpError(status), job_id=job_id)
    with pytest.raises(error):
        await wait_for_job(client, job_id, policy=policy)
    assert service.request_count(job_id) == 1


async def test_wrong_api_key_is_raised_at_once(
    service: FakeJobsService, policy: PollPolicy
) -> None:
    """401 ends the wait at once: polling again will not fix a key."""
    job_id = service.add_job(duration=60)
    async with JobsClient("wrong-key", base_url=service.base_url) as wrong:
        with pytest.raises(Unauthorized):
            await wait_for_job(wrong, job_id, policy=policy)
    assert service.request_count(job_id) == 1


async def test_invalid_field_is_raised_at_once(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """Well-formed JSON with a wrong value is the service's own answer: no retry."""
    job_id = service.add_job(duration=60)
    service.inject(Patch({"progress": -5}), job_id=job_id)
    with pytest.raises(DecodeError, match="progress"):
        await wait_for_job(client, job_id, policy=policy)
    assert service.request_count(job_id) == 1


async def test_not_found_grace_waits_for_a_job_to_appear(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """Within `not_found_grace`, a 404 for a job never seen is polled again."""
    policy = PollPolicy(clock=clock, sleep=clock.sleep, jitter=0, not_found_grace=30)
    wait = wait_for_job(client, "visible-soon", policy=policy)
    first = asyncio.create_task(anext(wait))
    await until(lambda: service.request_count("visible-soon") >= 4, step=0)
    service.add_job("visible-soon", duration=0)
    assert (await first).succeeded
    assert wait.done


async def test_not_found_after_the_grace_is_raised(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A job still missing when the grace is over raises `NotFound`, more than
    `max_failures` polls later if need be: the grace is measured in time."""
    policy = PollPolicy(
        clock=clock, sleep=clock.sleep, jitter=0, not_found_grace=60, max_failures=2
    )
    with pytest.raises(NotFound):
        await wait_for_job(client, "never-there", policy=policy)
    assert clock.now - clock.start >= 60
    assert service.request_count("never-there") > 2


async def test_not_found_after_the_job_was_seen_is_raised_at_once(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """The grace covers a job not visible yet, not one that vanished."""
    job_id = service.add_job(duration=3600)
    policy = PollPolicy(clock=clock, sleep=clock.sleep, jitter=0, not_found_grace=600)
    wait = wait_for_job(client, job_id, policy=policy)
    await anext(wait)
    service.remove_job(job_id)
    with pytest.raises(NotFound):
        await anext(wait)
    assert service.request_count(job_id) == 2


# Deadlines ----------------------------------------------------------------------------------


async def test_deadline_with_a_last_job(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy, clock: VirtualClock
) -> None:
    """At the deadline, `WaitTimeout` carries the last snapshot; the last sleep is clamped."""
    job_id = service.add_job(duration=3600)
    with pytest.raises(WaitTimeout, match="did not end within 100 s") as caught:
        await wait_for_job(client, job_id, policy=policy, timeout=100)
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert isinstance(error, JobPollError)
    assert error.job is not None
    assert error.job.status is JobStatus.RUNNING
    assert (error.timeout, error.last_error, error.__cause__) == (100, None, None)
    assert clock.now - clock.start == pytest.approx(100)
    assert clock.sleeps[:-1] == SCHEDULE[: len(clock.sleeps) - 1]
    assert 0 < clock.sleeps[-1] < SCHEDULE[len(clock.sleeps) - 1]


async def test_deadline_without_a_last_job(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A deadline reached while every poll fails carries no job, and the last error."""
    job_id = service.add_job(duration=0)
    service.inject(HttpError(503), job_id=job_id, times=None)
    policy = PollPolicy(clock=clock, sleep=clock.sleep, jitter=0, max_failures=1000)
    with pytest.raises(WaitTimeout, match="never seen") as caught:
        await wait_for_job(client, job_id, policy=policy, timeout=20)
    assert caught.value.job is None
    assert isinstance(caught.value.last_error, ServiceUnavailable)
    assert caught.value.__cause__ is caught.value.last_error
    assert clock.now - clock.start == pytest.approx(20)


async def test_retry_after_past_the_deadline_ends_at_the_deadline(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy, clock: VirtualClock
) -> None:
    """A Retry-After longer than the time left sleeps to the deadline, not past it."""
    job_id = service.add_job(duration=0)
    service.inject(HttpError(429, retry_after=120), job_id=job_id)
    with pytest.raises(WaitTimeout) as caught:
        await wait_for_job(client, job_id, policy=policy, timeout=30)
    assert isinstance(caught.value.last_error, RateLimited)
    assert clock.sleeps == [30]


@pytest.mark.parametrize(
    ("status", "raised"), [(503, WaitTimeout), (403, Forbidden)], ids=["transient", "final"]
)
async def test_failure_past_the_deadline(
    service: FakeJobsService,
    client: JobsClient,
    clock: VirtualClock,
    status: int,
    raised: type[Exception],
) -> None:
    """A failure that lands past the deadline ends the wait: as `WaitTimeout` when it was
    worth another poll, as itself when it was not."""
    job_id = service.add_job(duration=3600)
    service.inject(Patch({}), job_id=job_id)  # the first poll is answered, then no more
    service.inject(HttpError(status), job_id=job_id, times=None)

    def slow_clock() -> float:  # the second request takes 100 s
        return clock.now + (100 if service.request_count(job_id) >= 2 else 0)

    policy = PollPolicy(clock=slow_clock, sleep=clock.sleep, jitter=0)
    with pytest.raises(raised):
        await wait_for_job(client, job_id, policy=policy, timeout=60)
    assert service.request_count(job_id) == 2


async def test_no_poll_after_a_sleep_that_overran_the_deadline(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A sleep that wakes up late (a busy loop) past the deadline ends the wait unpolled."""

    async def late_sleep(seconds: float) -> None:
        await clock.sleep(seconds * 3)

    job_id = service.add_job(duration=3600)
    policy = PollPolicy(initial=1, factor=1.5, clock=clock, sleep=late_sleep, jitter=0)
    with pytest.raises(WaitTimeout):
        await wait_for_job(client, job_id, policy=policy, timeout=10)
    assert clock.sleeps == [3, 4.5, 6.75]  # woke up at 3, 7.5, then 14.25: past 10
    assert service.request_count(job_id) == 3


async def test_no_sleep_once_the_deadline_has_passed(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy, clock: VirtualClock
) -> None:
    """Time spent outside the sleeps (here in `on_update`) counts against the deadline."""
    job_id = service.add_job(duration=3600)
    wait = wait_for_job(
        client, job_id, policy=policy, timeout=60, on_update=lambda _: clock.advance(90)
    )
    with pytest.raises(WaitTimeout) as caught:
        await wait
    assert caught.value.job is not None
    assert (wait.job, wait.job_id) == (caught.value.job, job_id)
    assert clock.sleeps == []
    assert wait.polls == 1


async def test_request_timeout_is_cut_to_the_time_left(service: FakeJobsService) -> None:
    """A request is never allowed longer than what remains of the deadline (real time)."""
    job_id = service.add_job(duration=0)
    service.inject(Slow(10), job_id=job_id)
    async with JobsClient(service.api_key, base_url=service.base_url) as client:
        with pytest.raises(WaitTimeout) as caught:
            await wait_for_job(client, job_id, timeout=0.3)
    assert isinstance(caught.value.last_error, TransportError)
    assert no_other_tasks()  # at once, not eventually: jobpoll left nothing running
    await until_idle(service)  # the deadline released the request and its connection


async def test_works_under_asyncio_timeout(service: FakeJobsService) -> None:
    """An outer `asyncio.timeout` cancels the wait cleanly, mid-request or mid-sleep."""
    job_id = service.add_job(duration=3600)
    service.inject(Slow(10), job_id=job_id)
    async with JobsClient(service.api_key, base_url=service.base_url) as client:
        with pytest.raises(TimeoutError) as caught:
            async with asyncio.timeout(0.2):
                await wait_for_job(client, job_id)
        assert not isinstance(caught.value, WaitTimeout)
        assert no_other_tasks()  # at once, not eventually: jobpoll left nothing running
        await until_idle(service)
        service.clear_faults()  # in case the request was cut off before it reached the service
        assert (await client.get_job(job_id)).status is JobStatus.RUNNING


@pytest.mark.parametrize("seconds", [0, -1, float("nan"), float("inf"), "60", True])
async def test_bad_timeout_is_refused(client: JobsClient, seconds: object) -> None:
    """A deadline that is not a positive number of seconds is refused before any poll."""
    with pytest.raises(ConfigurationError, match="timeout"):
        wait_for_job(client, "a-job", timeout=seconds)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"policy": {"initial": 1}}, "policy must be a PollPolicy", id="policy"),
        pytest.param({"on_update": "print"}, "on_update must be callable", id="on_update"),
    ],
)
async def test_wrong_types_are_refused(
    client: JobsClient, options: dict[str, object], message: str
) -> None:
    """A policy that is no `PollPolicy`, or an `on_update` that cannot be called, is a
    `TypeError` when the wait is made, not a puzzle at the first poll."""
    with pytest.raises(TypeError, match=message):
        wait_for_job(client, "a-job", **options)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="client must be a JobsClient"):
        wait_for_job("http://localhost", "a-job")  # type: ignore[arg-type]


@pytest.mark.parametrize("job_id", ["", " padded ", "a\nb", "x" * 300])
async def test_bad_job_id_is_refused_at_once(
    service: FakeJobsService, client: JobsClient, job_id: str
) -> None:
    """An id that could never be sent raises `InvalidJobId` when the wait is made."""
    with pytest.raises(InvalidJobId):
        wait_for_job(client, job_id)
    assert service.request_count() == 0


# Stall guard --------------------------------------------------------------------------------


async def test_stall_guard_raises_with_the_last_job(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A job unchanged for `stall_timeout` raises `JobStalled` carrying it, at the first
    poll past it (polls of a silent job come at most 45 s apart)."""
    job_id = service.add_job(duration=86400)
    service.set_job(job_id, status=JobStatus.RUNNING, progress=40)
    policy = PollPolicy(clock=clock, sleep=clock.sleep, jitter=0, stall_timeout=300)
    with pytest.raises(JobStalled, match="has not changed for") as caught:
        await wait_for_job(client, job_id, policy=policy)
    assert caught.value.job.progress == 40
    assert 300 <= caught.value.unchanged_for <= 345
    assert 300 <= clock.now - clock.start <= 345


async def test_stall_guard_is_quiet_while_progress_moves(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """Progress that keeps moving, however slowly, is no stall."""
    job_id = service.add_job(duration=7200)  # one percent every 72 s
    policy = PollPolicy(clock=clock, sleep=clock.sleep, jitter=0, stall_timeout=300)
    assert (await wait_for_job(client, job_id, policy=policy)).succeeded


async def test_stall_guard_is_off_by_default(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """Without `stall_timeout`, a job queued for a day is waited for."""
    job_id = service.add_job(duration=86400, queued=86000)
    assert (await wait_for_job(client, job_id, policy=policy)).succeeded


# Structure: break, cancel, reuse ------------------------------------------------------------


async def test_break_leaves_nothing_behind_and_the_wait_resumes(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """Breaking out holds no task or request; iterating again or awaiting picks up."""
    job_id = service.add_job(duration=120)
    wait = wait_for_job(client, job_id, policy=policy)
    async for job in wait:
        assert job.progress == 0
        break
    assert no_other_tasks()
    assert service.in_flight == 0
    polls = wait.polls
    async for _job in wait:
        break
    assert wait.polls > polls
    assert (await wait).succeeded
    assert (await wait).succeeded  # once over, the same outcome again
    assert await collect(wait) == []


async def test_failed_outcome_raises_on_every_await(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """Awaiting an ended wait again gives the same outcome, without polling."""
    job_id = service.add_job(duration=5, final_status=JobStatus.DIED)
    wait = wait_for_job(client, job_id, policy=policy)
    for _ in range(2):
        with pytest.raises(JobFailedError):
            await wait
    assert service.request_count(job_id) == wait.polls


async def test_error_outcome_is_raised_again(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """A wait ended by an error raises it again when awaited again, and iterates no more."""
    wait = wait_for_job(client, "missing", policy=policy)
    with pytest.raises(NotFound) as first:
        await wait
    with pytest.raises(NotFound) as second:
        await wait
    assert first.value is second.value
    assert await collect(wait) == []
    assert service.request_count("missing") == 1


async def test_one_consumer_at_a_time(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """Two tasks driving one wait at once is a bug in the caller, reported as such."""
    job_id = service.add_job(duration=0)
    service.inject(Slow(0.2), job_id=job_id)
    wait = wait_for_job(client, job_id, policy=policy)
    first = asyncio.create_task(anext(wait))
    await asyncio.sleep(0)  # `first` runs up to its request, holding the wait
    with pytest.raises(RuntimeError, match="already being consumed"):
        await anext(wait)
    assert (await first).succeeded


async def test_cancelling_mid_request_propagates_and_frees_the_connection(
    service: FakeJobsService,
) -> None:
    """Cancelling the awaiting task raises `CancelledError` and releases the request; the
    caller's own session stays open and usable."""
    job_id = service.add_job(duration=0)
    service.inject(Slow(10), job_id=job_id)
    async with aiohttp.ClientSession() as session:
        client = JobsClient(service.api_key, base_url=service.base_url, session=session)
        task = asyncio.create_task(_await(wait_for_job(client, job_id)))
        await until(lambda: service.in_flight > 0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert no_other_tasks()  # at once, not eventually: jobpoll left nothing running
        await until_idle(service)
        await client.aclose()
        assert not session.closed
        again = JobsClient(service.api_key, base_url=service.base_url, session=session)
        assert (await again.get_job(job_id)).succeeded


async def _await(wait: JobWait) -> Job:
    return await wait


async def test_cancelling_mid_sleep_propagates(service: FakeJobsService) -> None:
    """A cancellation during the pause between polls propagates at once (real time)."""
    job_id = service.add_job(duration=3600)
    async with JobsClient(service.api_key, base_url=service.base_url) as client:
        wait = wait_for_job(client, job_id, policy=PollPolicy(initial=60, max_interval=60))
        task = asyncio.create_task(_await(wait))
        # Once the first answer is taken in, the wait's only way on is its 60 s pause. (A
        # request merely sent, `polls > 0`, may not have reached the service yet: cancelling
        # then lands mid-request, while the service still accepts or dispatches it.)
        await until(lambda: wait.job is not None)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not wait.done  # a cancelled wait is not over: it may be resumed
        assert (wait.polls, service.request_count(job_id), service.in_flight) == (1, 1, 0)
        assert no_other_tasks()


# Logging and errors -------------------------------------------------------------------------


async def test_logs_polls_and_retries_never_the_key(
    service: FakeJobsService,
    client: JobsClient,
    policy: PollPolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The `jobpoll` logger tells each change with the next delay, and each retry."""
    job_id = service.add_job(duration=10)
    service.inject(HttpError(503, retry_after=7), job_id=job_id)
    with caplog.at_level(logging.DEBUG, logger="jobpoll"):
        await wait_for_job(client, job_id, policy=policy)
    messages = [record.getMessage() for record in caplog.records]
    assert any(
        f"job {job_id}: " in m and "failure 1 of at most 10 in a row, next poll in 7.0 s" in m
        for m in messages
    )
    assert any(f"job {job_id}: RUNNING" in m and "next poll in" in m for m in messages)
    assert any(f"job {job_id}: FINISHED 100%" in m for m in messages)
    assert all(record.name == "jobpoll" for record in caplog.records)
    assert service.api_key not in caplog.text


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(lambda job: JobFailedError(job), id="failed"),
        pytest.param(lambda job: JobStalled(job, 301.0), id="stalled"),
        pytest.param(
            lambda job: WaitTimeout(job.id, timeout=60, job=job, last_error=TransportError("x")),
            id="timeout",
        ),
    ],
)
def test_wait_errors_pickle_with_their_job(error: object) -> None:
    """Errors of a wait cross process boundaries with the job they carry."""
    from datetime import UTC, datetime

    job = Job(id="j", created_at=datetime(2026, 1, 1, tzinfo=UTC), status=JobStatus.FAILED)
    original = error(job)  # type: ignore[operator]
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is type(original)
    assert str(copy) == str(original)
    assert copy.job == job
    assert copy.job_id == "j"


async def test_repr_tells_the_state(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """A wait's repr names the job, what was last seen and the polls made."""
    job_id = service.add_job(duration=0)
    wait = wait_for_job(client, job_id, policy=policy)
    assert repr(wait) == f"<JobWait {job_id!r} not seen, 0 polls>"
    await wait
    assert repr(wait) == f"<JobWait {job_id!r} FINISHED 100%, 1 polls>"

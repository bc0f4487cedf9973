"""A fan-out's jobs are polled exactly as often, and end exactly as, the same jobs waited for
one by one with `wait_for_job`: its rows keep every bit of each job's state."""

from __future__ import annotations

import random
from typing import Any

import pytest

from jobpoll import Job, JobPollError, JobsClient, PollPolicy, wait_for_job, wait_for_jobs
from jobpoll.testing import FakeJobsService, HttpError, VirtualClock

SCRIPTS: list[dict[str, Any]] = [
    {"duration": 5},
    {"duration": 200},
    {"duration": 9000, "progress": None},  # blind: its pace's index outgrows a byte
    {"duration": 900, "queued": 300},
    {"duration": 120, "final_status": "FAILED"},
    {"duration": 300, "running_status": "REBALANCING"},  # a status jobpoll does not know
    {"duration": 600, "user": None},
    {"duration": 400, "final_status": "ARCHIVED"},
    {"duration": 5000, "queued": 2000},
]
#: (script, status, times): a job's first answers are faults.
FAULTS: list[tuple[int, int, int]] = [(3, 500, 2), (1, 404, 1), (6, 502, 4), (7, 500, 9)]


def script(service: FakeJobsService, index: int) -> str:
    job_id = service.add_job(**SCRIPTS[index])
    for target, status, times in FAULTS:
        if target == index:
            service.inject(HttpError(status), job_id=job_id, times=times)
    return job_id


def outcome(job: Any, error: JobPollError | None) -> tuple[Any, ...]:
    return (
        None if job is None else (job.raw_status, job.progress, job.user),
        type(error).__name__,
    )


@pytest.fixture(params=[1000.0, 0.0, -5e5, 1e12])
def clock(request: pytest.FixtureRequest) -> VirtualClock:
    """Clocks that start at 0, below it (due times negative) and far from it."""
    start: float = request.param
    return VirtualClock(start)


@pytest.mark.parametrize("wait_timeout", [None, 1500.0])
async def test_fanout_polls_and_ends_as_each_job_alone(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock, wait_timeout: float | None
) -> None:
    policy = PollPolicy(jitter=0, clock=clock, sleep=clock.sleep, rng=random.Random(3).random)
    alone = []
    for index in range(len(SCRIPTS)):
        job_id = script(service, index)
        wait = wait_for_job(client, job_id, policy=policy, timeout=wait_timeout)
        error: JobPollError | None = None
        job: Job | None
        try:
            job = await wait
        except JobPollError as exc:
            job, error = getattr(exc, "job", wait.job), exc
        alone.append((service.request_count(job_id), outcome(job, error)))
    ids = [script(service, index) for index in range(len(SCRIPTS))]
    # One poll in flight at a time: the virtual clock moves only while nothing is in flight,
    # so each job sees the same times as alone.
    results = await wait_for_jobs(client, ids, policy=policy, timeout=wait_timeout, max_in_flight=1)
    together = [(service.request_count(r.job_id), outcome(r.job, r.error)) for r in results]
    assert together == alone

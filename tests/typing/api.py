"""The public API as a user's type checker sees it: `mypy --strict tests/typing` must pass.

Not run by pytest; CI type-checks it, so a change that breaks users' annotations fails there.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import attrs

import jobpoll
from jobpoll import (
    ApiError,
    CheckpointError,
    ClientStateError,
    DecodeError,
    Job,
    JobFailedError,
    JobPollError,
    JobResult,
    JobsClient,
    JobStalled,
    JobStatus,
    JobsWait,
    JobWait,
    PollPolicy,
    RateLimited,
    TransportError,
    WaitTimeout,
    wait_for_job,
    wait_for_jobs,
)
from jobpoll.testing import FakeJobsService, HttpError, Slow, VirtualClock


async def fetch_one(session: aiohttp.ClientSession) -> Job:
    async with JobsClient("key", session=session, total_timeout=5.0) as client:
        job: Job = await client.get_job(uuid.uuid4(), timeout=1.5)
    created: datetime = job.created_at
    progress: int = job.progress
    status: JobStatus = job.status
    raw: str = job.raw_status
    done: bool = job.is_terminal and job.succeeded and not job.failed and status.is_terminal
    print(created, progress, raw, done)
    return job


def classify(error: JobPollError) -> str:
    retry: float | None = error.retry_after if isinstance(error, RateLimited) else None
    if isinstance(error, ApiError):
        return f"{error.http_status} {error.message} {error.error_id} {retry}"
    if isinstance(error, DecodeError):
        return f"{error.field} {error.snippet}"
    if isinstance(error, TransportError):
        reached: bool = error.reached
        never: bool = error.never_answered
        return f"{error.job_id} {reached} {never}"
    if isinstance(error, ClientStateError):
        runtime: RuntimeError = error
        return str(runtime)
    setup: bool = error.affects_all
    return f"{error.transient} {setup}"


async def script() -> str:
    async with FakeJobsService(clock=lambda: 0.0) as service:
        job_id: str = service.add_job(duration=2.0, final_status=JobStatus.FAILED)
        service.inject(HttpError(503, retry_after=1.0), times=2)
        service.inject(Slow(0.5), job_id=job_id, times=None)
        count: int = service.request_count(job_id)
        return f"{service.base_url} {service.api_key} {count} {jobpoll.__version__}"


async def wait(client: JobsClient, job_id: str) -> Job | None:
    clock = VirtualClock()
    policy = PollPolicy(
        initial=2.0, max_interval=60, first_contact_grace=5.0, clock=clock, sleep=clock.sleep
    )
    prompt = attrs.evolve(policy, max_lateness=10)
    longest: float = prompt.max_estimated_interval
    print(longest)

    async def report(job: Job) -> None:
        print(job.progress)

    waiting: JobWait = wait_for_job(client, job_id, policy=policy, timeout=600, on_update=report)
    async for snapshot in waiting:
        print(snapshot.status, waiting.polls, waiting.job, waiting.done)
    try:
        final: Job = await wait_for_job(client, uuid.uuid4(), on_update=print)
    except JobFailedError as failed:
        return failed.job
    except JobStalled as stalled:
        print(stalled.unchanged_for)
        return stalled.job
    except WaitTimeout as timed_out:
        cause: JobPollError | None = timed_out.last_error
        print(cause, timed_out.timeout)
        return timed_out.job
    return final


async def resume(client: JobsClient, job_id: str, saved: dict[str, object]) -> Job | None:
    clock = VirtualClock()
    policy = PollPolicy(clock=clock, sleep=clock.sleep, wall_clock=clock.wall)
    first: JobWait = wait_for_job(client, job_id, policy=policy, timeout=60)
    checkpoint: dict[str, Any] = first.checkpoint()
    due: str | None = checkpoint["next_poll_at"]
    print(due, json.dumps(checkpoint))
    try:
        again: JobWait = wait_for_job(client, job_id, policy=policy, resume=saved)
    except CheckpointError as refused:
        invalid: ValueError = refused
        print(invalid)
        return None
    return await again


async def fan_out(client: JobsClient, job_ids: list[str | uuid.UUID]) -> list[JobResult]:
    def report(job: Job) -> None:
        print(job.id, job.progress)

    many: JobsWait = wait_for_jobs(
        client, job_ids, timeout=3600.0, max_in_flight=8, on_update=report
    )
    async with many as results:
        async for result in results:
            error: JobPollError | None = result.error
            last: Job | None = result.job
            print(result.job_id, result.ok, error, last, many.reported, many.total, many.polls)
    everything: list[JobResult] = await wait_for_jobs(client, iter(job_ids))
    pool: int = client.pool_size + many.in_flight
    print(pool)
    return everything


async def fed(client: JobsClient, source: AsyncIterator[str]) -> dict[str, Any]:
    async with wait_for_jobs(client, source, max_in_flight=8) as fanout:
        added: int = fanout.add(["a", uuid.uuid4()])
        async for result in fanout:
            print(result, added)
            saved: dict[str, Any] = fanout.checkpoint()
            return saved
    resumed: JobsWait = wait_for_jobs(client, [], resume={"version": 1})
    return resumed.checkpoint()


def to_and_from_dict(result: JobResult, job: Job) -> tuple[JobResult, Job, str]:
    data: dict[str, object] = result.to_dict()
    again: JobResult = JobResult.from_dict(result.to_dict())
    same: Job = Job.from_dict(job.to_dict())
    print(data, again)
    where: str = jobpoll.BASE_URL_ENV + jobpoll.API_KEY_ENV
    return again, same, where


def from_environment() -> JobsClient:
    return JobsClient()  # the key from CDQ_API_KEY, the base URL from CDQ_BASE_URL


def misspelt() -> object:
    # A name jobpoll does not export is an error here, as it is at run time: the names are
    # imported on first use, and type checkers still see exactly them.
    return jobpoll.JobClient  # type: ignore[attr-defined]

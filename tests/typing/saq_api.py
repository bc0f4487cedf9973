"""`jobpoll.saq` as a user's type checker sees it: `mypy --strict tests/typing` must pass."""

from __future__ import annotations

from typing import Any

from saq import Queue, Worker

from jobpoll import (
    JobResult,
    JobsClient,
    PollPolicy,
    QueueDataLost,
    QueueError,
    QueueNotDurable,
    QueueUnavailable,
)
from jobpoll.saq import (
    POLL_FUNCTION,
    OutcomePending,
    SaqWaits,
    Undelivered,
    load_result,
    result_to_json,
)

queue = Queue.from_url("redis://localhost:6379", name="jobpoll")
waits = SaqWaits(queue, on_outcome="job_ended", policy=PollPolicy(), poll_timeout=60.0)


async def job_ended(ctx: dict[str, Any], *, result: dict[str, Any]) -> None:
    outcome: JobResult = load_result(result)
    again: dict[str, Any] = result_to_json(outcome, polls=3)
    assert again["jobId"] == outcome.job_id


settings: dict[str, Any] = waits.worker_settings(
    client=lambda: JobsClient("key"), functions=[job_ended], concurrency=10
)
worker = Worker(**settings)
name: str = POLL_FUNCTION


async def submitter(job_ids: list[str]) -> None:
    started: list[bool] = await waits.submit(job_ids, timeout=3600)
    assert len(started) == len(job_ids)
    one: JobResult = await waits.result(job_ids[0])
    assert one.job_id == job_ids[0]
    async for result in waits.results(job_ids):
        print(result.ok, result.error)
    count: int = await waits.delivered()
    print(count)


async def operator(job_id: str) -> None:
    undelivered: list[Undelivered] = await waits.undelivered()
    for entry in undelivered:
        kind: str | None = entry.error_type
        message: str | None = entry.error_message
        attempts: int | None = entry.attempts
        print(entry.job_id, kind, message, attempts)
    again: list[str] = await waits.redeliver([entry.job_id for entry in undelivered])
    every: list[str] = await waits.redeliver()
    print(again, every)
    try:
        forgotten: bool = await waits.forget(job_id)
    except OutcomePending as exc:
        print(exc.job_id)
    else:
        print(forgotten)


async def on_a_managed_redis(job_ids: list[str]) -> None:
    declared = SaqWaits(queue, on_outcome=None, durability="declared")
    try:
        await declared.submit(job_ids)
    except QueueNotDurable as refused:
        setting: str = refused.setting
        value: str | None = refused.value
        print(setting, value)
    except (QueueUnavailable, QueueDataLost) as failed:
        error: QueueError = failed
        print(error.transient)

"""A SAQ worker process running jobpoll's waits, for tests/test_saq.py (run as a program).

The outcome function keeps the first result per job id (as a user's idempotent handler
would) and logs every call with its SAQ attempt number; each link's return value is counted
per worker, so a test can see which workers paused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any

from saq import Queue, Worker

from jobpoll import JobsClient, PollPolicy
from jobpoll._saq_redis import Durability
from jobpoll.saq import POLL_FUNCTION, SaqWaits

# Fast enough that a test of hundreds of jobs takes seconds; real time, since a wait moves
# between processes.
TEST_POLICY = PollPolicy(
    initial=0.5, factor=1.5, max_interval=1.0, progress_aware=False, first_contact_grace=5.0
)


async def record_outcome(ctx: dict[str, Any], *, result: dict[str, Any]) -> None:
    """The user's outcome function of the tests."""
    redis = ctx["worker"].queue.redis
    name = ctx["worker"].queue.name
    job = ctx["job"]
    await redis.rpush(f"test:{name}:calls", f"{result['jobId']} {job.attempts}")
    await redis.hsetnx(f"test:{name}:outcomes", result["jobId"], json.dumps(result))


def make_waits(
    redis_url: str, queue_name: str, poll_timeout: float, durability: Durability = "checked"
) -> SaqWaits:
    queue = Queue.from_url(redis_url, name=queue_name)
    return SaqWaits(
        queue,
        on_outcome="record_outcome",
        policy=TEST_POLICY,
        poll_timeout=poll_timeout,
        outcome_timeout=poll_timeout,
        mend_interval=2.0,
        durability=durability,
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--poll-timeout", type=float, default=30.0)
    parser.add_argument("--durability", default="checked")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    waits = make_waits(
        arguments.redis, arguments.queue, arguments.poll_timeout, arguments.durability
    )
    queue = waits.queue
    steps_key = f"test:{queue.name}:steps:{arguments.name}"

    async def note_poller(ctx: dict[str, Any]) -> None:
        # Which worker polls which job now, for a test that kills the one making a poll
        # (SAQ's own record of the link may be rewritten by its sweep meanwhile).
        job = ctx.get("job")
        if job is not None and job.function == POLL_FUNCTION and job.kwargs:
            await queue.redis.hset(
                f"test:{queue.name}:polling", job.kwargs["job_id"], arguments.name
            )

    async def count_step(ctx: dict[str, Any]) -> None:
        job = ctx.get("job")
        if job is not None and job.function == POLL_FUNCTION and isinstance(job.result, str):
            await queue.redis.hincrby(steps_key, job.result, 1)

    def client() -> JobsClient:
        return JobsClient(
            arguments.api_key,
            base_url=arguments.base_url,
            connect_timeout=4.0,
            total_timeout=4.0,
        )

    settings = waits.worker_settings(
        client=client,
        functions=[record_outcome],
        id=arguments.name,
        concurrency=arguments.concurrency,
        before_process=note_poller,
        after_process=count_step,
        timers={"schedule": 1, "sweep": 1, "abort": 1, "worker_info": 5},
    )
    worker = Worker(**settings)
    await queue.connect()
    try:
        await queue.redis.rpush(f"test:{queue.name}:ready", arguments.name)
        await worker.start()
    finally:
        await queue.disconnect()


if __name__ == "__main__":
    asyncio.run(main())

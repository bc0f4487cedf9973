"""A SAQ worker process running jobpoll's waits, for tests/test_saq.py (run as a program).

The outcome function keeps the first result per job id (as a user's idempotent handler
would) and logs every call with its SAQ attempt number; each link's return value is counted
per worker, so a test can see which workers paused. `--outcome` picks another outcome
function: `blocking_outcome`, a plain one that blocks while the test holds it, or
`failing_outcome`, which raises while the test makes it.

`JOBPOLL_TEST_CLOCK_OFFSET` (seconds) puts this process's wall clock (`time.time`, which SAQ
and a policy's `wall_clock` read) that far off, before anything reads it.
"""

from __future__ import annotations

import os
import time

_OFFSET = float(os.environ.get("JOBPOLL_TEST_CLOCK_OFFSET", "0"))
if _OFFSET:
    _true_time = time.time
    time.time = lambda: _true_time() + _OFFSET

import argparse  # noqa: E402 - after the clock is set
import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
from typing import Any  # noqa: E402

import redis  # noqa: E402
from saq import Queue, Worker  # noqa: E402

from jobpoll import JobsClient, PollPolicy  # noqa: E402
from jobpoll._saq_redis import Durability  # noqa: E402
from jobpoll.saq import POLL_FUNCTION, SaqWaits  # noqa: E402

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


#: What the outcome functions that block (in a thread) talk to Redis with.
SYNC_REDIS: dict[str, redis.Redis] = {}


def blocking_outcome(ctx: dict[str, Any], *, result: dict[str, Any]) -> None:
    """A plain outcome function that blocks (`time.sleep`) while `test:<queue>:hold` is set,
    noting each job it blocks on in `test:<queue>:blocked`, then records as `record_outcome`."""
    sync, name = SYNC_REDIS["client"], ctx["worker"].queue.name
    sync.rpush(f"test:{name}:blocked", result["jobId"])
    while sync.exists(f"test:{name}:hold"):
        time.sleep(0.05)
    sync.rpush(f"test:{name}:calls", f"{result['jobId']} {ctx['job'].attempts}")
    sync.hsetnx(f"test:{name}:outcomes", result["jobId"], json.dumps(result))


async def failing_outcome(ctx: dict[str, Any], *, result: dict[str, Any]) -> None:
    """Raises (a message holding `test:<queue>:fail`'s value) while that key is set."""
    queue = ctx["worker"].queue
    reason = await queue.redis.get(f"test:{queue.name}:fail")
    if reason is not None:
        await queue.redis.rpush(f"test:{queue.name}:failed", result["jobId"])
        raise RuntimeError(f"cannot store the outcome: {reason.decode()}")
    await record_outcome(ctx, result=result)


def count_ticks(queue: Any, path: str) -> None:
    """Add a byte to the file `path` at each tick of the worker's `schedule` upkeep (a file:
    it counts while Redis is away), before the tick asks Redis anything."""
    schedule = queue.schedule
    ticks = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)  # open while the worker runs

    async def counted(lock: int = 1) -> Any:
        os.write(ticks, b".")
        return await schedule(lock)

    queue.schedule = counted


def make_waits(
    redis_url: str,
    queue_name: str,
    poll_timeout: float,
    outcome: str = "record_outcome",
    durability: Durability = "checked",
) -> SaqWaits:
    queue = Queue.from_url(redis_url, name=queue_name)
    return SaqWaits(
        queue,
        on_outcome=outcome,
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
    parser.add_argument("--outcome", default="record_outcome")
    parser.add_argument("--request-timeout", type=float, default=4.0)
    parser.add_argument("--durability", default="checked")
    parser.add_argument("--ticks", help="a file to add a byte to at each tick of SAQ's schedule")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    waits = make_waits(
        arguments.redis,
        arguments.queue,
        arguments.poll_timeout,
        arguments.outcome,
        arguments.durability,
    )
    SYNC_REDIS["client"] = redis.Redis.from_url(arguments.redis)
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

    async def announce_ready(ctx: dict[str, Any]) -> None:
        # Ready once jobpoll's startup is done (Redis checked, lease taken): a test that then
        # breaks Redis meets a running worker, not one still starting.
        await queue.redis.rpush(f"test:{queue.name}:ready", arguments.name)

    def client() -> JobsClient:
        return JobsClient(
            arguments.api_key,
            base_url=arguments.base_url,
            connect_timeout=4.0,
            total_timeout=arguments.request_timeout,
        )

    settings = waits.worker_settings(
        client=client,
        functions=[record_outcome, blocking_outcome, failing_outcome],
        id=arguments.name,
        concurrency=arguments.concurrency,
        startup=announce_ready,
        before_process=note_poller,
        after_process=count_step,
        timers={"schedule": 1, "sweep": 1, "abort": 1, "worker_info": 5},
    )
    if arguments.ticks:
        count_ticks(settings["queue"], arguments.ticks)
    worker = Worker(**settings)
    await queue.connect()
    try:
        await worker.start()
    finally:
        await queue.disconnect()


if __name__ == "__main__":
    asyncio.run(main())

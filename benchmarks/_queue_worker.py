"""A SAQ worker process running jobpoll's waits, for bench_queue.py (run as a program).

Its outcome function keeps the first result per job id and logs every call, so the
benchmark can count outcomes lost and delivered twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from typing import Any

from saq import Queue, Worker

from jobpoll import JobsClient, PollPolicy
from jobpoll.saq import SaqWaits

POLICIES = {
    # One poll a second per wait, whatever the job says: a steady load to measure.
    "steady": PollPolicy(initial=1.0, factor=1.0, max_interval=1.0, progress_aware=False),
    # One poll, then none for ten minutes: waits that sit in Redis, to weigh.
    "idle": PollPolicy(initial=600.0, factor=1.0, max_interval=600.0, progress_aware=False),
    # Short jobs seen soon: the kill phase.
    "fast": PollPolicy(initial=0.5, factor=1.5, max_interval=1.0, progress_aware=False),
}


async def record_outcome(ctx: dict[str, Any], *, result: dict[str, Any]) -> None:
    """The user's outcome function of the benchmark."""
    redis = ctx["worker"].queue.redis
    name = ctx["worker"].queue.name
    await redis.rpush(f"bench:{name}:calls", result["jobId"])
    await redis.hsetnx(f"bench:{name}:outcomes", result["jobId"], json.dumps(result))


def make_waits(
    redis_url: str, queue_name: str, policy: str, mend_interval: float = 60.0
) -> SaqWaits:
    queue = Queue.from_url(redis_url, name=queue_name)
    return SaqWaits(
        queue,
        on_outcome="record_outcome",
        policy=POLICIES[policy],
        poll_timeout=10.0,
        outcome_timeout=10.0,
        mend_interval=mend_interval,
        durability="volatile-accepted",  # the benchmark's Redis keeps nothing on disk
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--policy", choices=sorted(POLICIES), required=True)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--mend-interval", type=float, default=60.0)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    waits = make_waits(arguments.redis, arguments.queue, arguments.policy, arguments.mend_interval)
    queue = waits.queue

    def client() -> JobsClient:
        return JobsClient(
            arguments.api_key, base_url=arguments.base_url, connect_timeout=5.0, total_timeout=5.0
        )

    settings = waits.worker_settings(
        client=client,
        functions=[record_outcome],
        id=arguments.name,
        concurrency=arguments.concurrency,
        timers={"schedule": 1, "sweep": 2, "abort": 1, "worker_info": 10},
    )
    worker = Worker(**settings)
    await queue.connect()
    try:
        await queue.redis.rpush(f"bench:{queue.name}:ready", arguments.name)
        await worker.start()
    finally:
        await queue.disconnect()


if __name__ == "__main__":
    asyncio.run(main())

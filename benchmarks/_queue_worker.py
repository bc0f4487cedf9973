"""A SAQ worker process for bench_queue.py (run as a program): jobpoll's waits, or (`--side
bare`) the floor they are measured against, a bare SAQ job that makes the same GET and
enqueues the next one (or the outcome) as a user would write it without jobpoll.

The outcome function keeps the first result per job id and logs every call, so the
benchmark can count outcomes lost and delivered twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from typing import Any

from saq import Job, Queue, Worker

from jobpoll import JobsClient, PollPolicy
from jobpoll.saq import SaqWaits

POLICIES = {
    # One poll a second per wait, whatever the job says: a steady load to measure.
    "steady": PollPolicy(initial=1.0, factor=1.0, max_interval=1.0, progress_aware=False),
    # One poll, then none for ten minutes: waits that sit in Redis, to weigh.
    "idle": PollPolicy(initial=600.0, factor=1.0, max_interval=600.0, progress_aware=False),
    # Polls ever further apart, the schedule following the job's progress (the default
    # policy's rules, sooner): waits with a history, to weigh once they sit in Redis.
    "long": PollPolicy(initial=0.2, factor=3.0, max_interval=600.0),
    # Short jobs seen soon: the kill phase.
    "fast": PollPolicy(initial=0.5, factor=1.5, max_interval=1.0, progress_aware=False),
}

#: The floor's interval between two polls of a wait, per policy (its first poll is at once).
BARE_INTERVALS = {"steady": 1.0, "idle": 600.0, "long": 600.0, "fast": 1.0}


async def record_outcome(ctx: dict[str, Any], *, result: dict[str, Any]) -> None:
    """The user's outcome function of the benchmark."""
    redis = ctx["worker"].queue.redis
    name = ctx["worker"].queue.name
    await redis.rpush(f"bench:{name}:calls", result["jobId"])
    await redis.hsetnx(f"bench:{name}:outcomes", result["jobId"], json.dumps(result))


def bare_job(job_id: str, step: int, interval: float) -> dict[str, Any]:
    """The floor's SAQ job polling `job_id` for the `step`-th time (`Queue.enqueue`'s
    arguments), `interval` seconds from now (0: at once): no retries, no timeout (a poll
    bounds itself by its client's), kept 10 s once run, as jobpoll's links are."""
    scheduled = 0 if step == 0 else int(time.time() + interval)
    return {
        "job_id": job_id,
        "step": step,
        "interval": interval,
        "key": f"bare:{job_id}:{step}",
        "scheduled": scheduled,
        "timeout": 0,
        "ttl": 10,
    }


async def bare_poll(ctx: dict[str, Any], *, job_id: str, step: int, interval: float) -> None:
    """The floor: one GET of the job, then its next poll enqueued, or its outcome."""
    job = await ctx["client"].get_job(job_id, paced=False)
    queue = ctx["worker"].queue
    if job.is_terminal:
        result = {"jobId": job_id, "job": job.to_dict(), "polls": step + 1}
        outcome = Job("record_outcome", kwargs={"result": result}, key=f"outcome:{job_id}")
        await queue.enqueue(outcome)
    else:
        await queue.enqueue("bare_poll", **bare_job(job_id, step + 1, interval))


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
    parser.add_argument("--side", choices=("jobpoll", "bare"), default="jobpoll")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    def client() -> JobsClient:
        return JobsClient(
            arguments.api_key, base_url=arguments.base_url, connect_timeout=5.0, total_timeout=5.0
        )

    timers = {"schedule": 1, "sweep": 2, "abort": 1, "worker_info": 10}
    if arguments.side == "bare":
        queue = Queue.from_url(arguments.redis, name=arguments.queue)

        async def startup(ctx: dict[str, Any]) -> None:
            ctx["client"] = client()

        async def shutdown(ctx: dict[str, Any]) -> None:
            await ctx["client"].aclose()

        settings: dict[str, Any] = {
            "queue": queue,
            "functions": [bare_poll, record_outcome],
            "startup": startup,
            "shutdown": shutdown,
        }
    else:
        waits = make_waits(
            arguments.redis, arguments.queue, arguments.policy, arguments.mend_interval
        )
        queue = waits.queue
        settings = waits.worker_settings(client=client, functions=[record_outcome])
    worker = Worker(**settings, id=arguments.name, concurrency=arguments.concurrency, timers=timers)
    await queue.connect()
    try:
        await queue.redis.rpush(f"bench:{queue.name}:ready", arguments.name)
        await worker.start()
    finally:
        await queue.disconnect()


if __name__ == "__main__":
    asyncio.run(main())

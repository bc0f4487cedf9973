"""Wait on CDQ jobs from a fleet of SAQ workers on Redis (see docs/guides/saq.md).

saq saq_app.settings --workers 4     # workers: on as many hosts as you like
python saq_app.py JOB_ID ...         # submit ids, then print each outcome as it comes
"""

import asyncio
import os
import sys
from typing import Any

from saq import Queue

from jobpoll import JobsClient
from jobpoll.saq import SaqWaits, load_result

queue = Queue.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379"), name="jobpoll")
waits = SaqWaits(queue, on_outcome="job_ended")  # alike in every process


async def job_ended(ctx: dict[str, Any], *, result: dict[str, Any]) -> None:
    """Run in a worker with each job's outcome: once per job id."""
    outcome = load_result(result)  # a JobResult
    print("ended:", outcome.job_id, "ok" if outcome.ok else outcome.error, flush=True)


# For the `saq` command: SAQ's own worker, running jobpoll's polls and your functions. Each
# worker makes its client with JobsClient(): the key from CDQ_API_KEY, the base URL from
# CDQ_BASE_URL (else the production one).
settings = waits.worker_settings(client=JobsClient, functions=[job_ended], concurrency=100)


async def main(job_ids: list[str]) -> None:
    await waits.submit(job_ids, timeout=3600)  # from any process; again is harmless
    async for result in waits.results(job_ids):  # from any process, too
        print(result.job_id, "ok" if result.ok else result.error, flush=True)
    await queue.disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))

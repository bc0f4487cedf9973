"""Wait on jobs of jobpoll's embedded fake service: no API key or network needed.

    python examples/demo.py [--seconds 3]

It starts the fake service on loopback and scripts jobs. It follows the first with
`async for job in wait_for_job(...)`, printing each change of status and progress, and awaits
the second, which fails, to show `JobFailedError`. Then it waits on 1000 jobs at once with
`wait_for_jobs(...)`, a few of them failing or missing, and counts the outcomes. Against the
real service, drop the fake and give `JobsClient` your key (or set CDQ_API_KEY).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random

from jobpoll import (
    JobFailedError,
    JobPollError,
    JobsClient,
    PollPolicy,
    wait_for_job,
    wait_for_jobs,
)
from jobpoll.testing import FakeJobsService

#: Polls every quarter second at first, at most every second: a demo's jobs are short.
DEMO_POLICY = PollPolicy(initial=0.25, max_interval=1.0)


async def demo(seconds: float) -> None:
    """Script jobs on the fake service and wait for them."""
    async with FakeJobsService() as service:
        job_id = service.add_job(duration=seconds, queued=seconds / 5, progress_as_string=True)
        print(f"fake service at {service.base_url}, job {job_id}")
        async with JobsClient(service.api_key, base_url=service.base_url) as client:
            waiting = wait_for_job(client, job_id, policy=DEMO_POLICY, timeout=seconds + 30)
            async for job in waiting:
                print(f"  {job.status:<9} {job.progress:>3}%")
            print(f"{job}\n({waiting.polls} polls)")

            # It stops at 60%, as a job that dies half-way through its work would.
            failing = service.add_job(
                duration=seconds / 2, final_status="DIED", progress=lambda done: 60 * done
            )
            try:
                await wait_for_job(client, failing, policy=DEMO_POLICY)
            except JobFailedError as error:
                print(f"and a job that dies: {type(error).__name__}: {error}")
            try:
                await wait_for_job(client, "no-such-job")
            except JobPollError as error:
                print(f"and a job that does not exist: {type(error).__name__}: {error}")

            # Many jobs at once: each ends on its own; a failure is a result, not a crash.
            rnd = random.Random(7)
            batch = [
                service.add_job(
                    duration=rnd.uniform(seconds / 3, seconds),
                    final_status=rnd.choices(["FINISHED", "FAILED"], weights=[49, 1])[0],
                )
                for _ in range(1000)
            ]
            batch += ["missing-1", "missing-2"]
            outcomes: collections.Counter[str] = collections.Counter()
            async with wait_for_jobs(client, batch, policy=DEMO_POLICY) as results:
                async for result in results:
                    outcomes["ok" if result.ok else type(result.error).__name__] += 1
            print(
                f"and {results.total} jobs at once, {results.polls} polls, at most"
                f" {client.pool_size} in flight: {dict(outcomes)}"
            )


def main() -> None:
    """Parse the arguments and run the demo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long the job runs")
    asyncio.run(demo(parser.parse_args().seconds))


if __name__ == "__main__":
    main()

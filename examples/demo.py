"""Watch a job on jobpoll's embedded fake service: no API key or network needed.

    python examples/demo.py [--seconds 3]

It starts the fake service on loopback, scripts a job that runs for a few seconds, and asks
for its status every half second with `JobsClient.get_job` until the job is over. Against the
real service, drop the fake and give `JobsClient` your key (or set CDQ_API_KEY).
"""

from __future__ import annotations

import argparse
import asyncio

from jobpoll import JobPollError, JobsClient
from jobpoll.testing import FakeJobsService


async def demo(seconds: float) -> None:
    """Script a job on the fake service and print it until it ends."""
    async with FakeJobsService() as service:
        job_id = service.add_job(duration=seconds, queued=seconds / 5, progress_as_string=True)
        print(f"fake service at {service.base_url}, job {job_id}")
        async with JobsClient(service.api_key, base_url=service.base_url) as client:
            while True:
                job = await client.get_job(job_id)
                print(f"  {job.status:<9} {job.progress:>3}%")
                if job.is_terminal:
                    break
                await asyncio.sleep(0.5)
            print(job)
            try:
                await client.get_job("no-such-job")
            except JobPollError as error:
                print(f"and a job that does not exist: {type(error).__name__}: {error}")


def main() -> None:
    """Parse the arguments and run the demo."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long the job runs")
    asyncio.run(demo(parser.parse_args().seconds))


if __name__ == "__main__":
    main()

"""How long a save of `jobpoll wait --state FILE` takes, and how large FILE is, per pending job.

Run from the repository root:

    .venv/bin/python benchmarks/bench_state_file.py [--jobs 2000 20000]

For each count, a fan-out waits on that many running jobs of the fake service (in this
process, over real HTTP, in virtual time) until each was seen running, then the state is
saved as `jobpoll wait --state` saves it (checkpoint, JSON, an atomic write with fsync);
the best of three saves is printed, per save and per pending job, with the file's bytes per
pending job. The saves of a run are spaced by at least `SAVE_SHARE` times a save's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from pathlib import Path

from jobpoll import Job, JobsClient, PollPolicy
from jobpoll._board import Board
from jobpoll._fanout import JobsWait
from jobpoll._output import Output
from jobpoll._state_file import SAVE_SHARE, StateKeeper
from jobpoll.testing import FakeJobsService, VirtualClock


async def measure(jobs: int, directory: Path) -> None:
    clock = VirtualClock()
    policy = PollPolicy(clock=clock, sleep=clock.sleep, wall_clock=clock.wall)
    async with FakeJobsService(clock=clock) as service:
        ids = [service.add_job(f"job-{n:07d}", duration=math.inf) for n in range(jobs)]
        seen: set[str] = set()
        every_job_seen = asyncio.Event()

        def on_update(job: Job) -> None:
            seen.add(job.id)
            if len(seen) == jobs:
                every_job_seen.set()

        async with JobsClient(service.api_key, base_url=service.base_url) as client:
            path = directory / f"state-{jobs}.json"
            keeper = StateKeeper(path, None, ids, out=Output(sys.stdout))
            fanout = keeper.start(client, policy, Board(ids, clock=clock), on_update)
            async with fanout:
                waiting = asyncio.ensure_future(anext(fanout))  # never ends: endless jobs
                await every_job_seen.wait()
                waiting.cancel()
                await asyncio.gather(waiting, return_exceptions=True)
            best = min(_timed_save(keeper, fanout) for _ in range(3))
            size = path.stat().st_size
    print(
        f"{jobs:>7,} jobs pending: a save takes {best * 1e3:7.1f} ms,"
        f" {best * 1e6 / jobs:5.1f} µs per job; {size / jobs:4.0f} bytes per job;"
        f" saves at most every {max(10.0, SAVE_SHARE * best):.0f} s"
    )


def _timed_save(keeper: StateKeeper, fanout: JobsWait) -> float:
    started = time.perf_counter()
    keeper.save(fanout)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[2000, 20000])
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        for jobs in arguments.jobs:
            asyncio.run(measure(jobs, Path(directory)))


if __name__ == "__main__":
    main()

"""A worker process for tests/test_checkpoint.py: waits on jobs of a fake service in another
process, maybe stops part-way with a checkpoint, maybe resumes from one.

    python tests/resume_worker.py SETUP_JSON

SETUP_JSON: `base_url`, `api_key`, `clock_file` (the virtual time it shares with the service),
`job_ids` (one id: `wait_for_job`; a list: `wait_for_jobs`), `stop_after` (snapshots or
results handed out before it takes a checkpoint and stops; None runs to the end), `resume` (a
checkpoint, or None). Prints one JSON line: `checkpoint`, `outcome`, `polls`, `sleeps`.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from pathlib import Path
from typing import Any

from jobpoll import JobFailedError, JobsClient, PollPolicy, wait_for_job, wait_for_jobs

EPOCH = 1_767_225_600.0


class FileClock:
    """A virtual clock kept in a file, so the fake service in the test's process reads the
    time this process's waits sleep to: the two move in step, whatever the machine's load."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.now = float(path.read_text())
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return EPOCH + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        spare = self.path.with_suffix(".new")
        spare.write_text(repr(self.now))
        spare.replace(self.path)  # at once: the service never reads half a number
        await asyncio.sleep(0)


async def main(setup: dict[str, Any]) -> dict[str, Any]:
    clock = FileClock(Path(setup["clock_file"]))
    policy = PollPolicy(
        clock=clock,
        sleep=clock.sleep,
        wall_clock=clock.wall,
        jitter=0.0,
        rng=random.Random(7).random,
    )
    stop_after, resume = setup["stop_after"], setup["resume"]
    outcome: Any = None
    checkpoint = None
    async with JobsClient(setup["api_key"], base_url=setup["base_url"]) as client:
        if isinstance(setup["job_ids"], str):
            timeout = None if resume else 7200
            wait = wait_for_job(
                client, setup["job_ids"], policy=policy, timeout=timeout, resume=resume
            )
            seen = 0
            async for _job in wait:
                seen += 1
                if seen == stop_after:
                    checkpoint = wait.checkpoint()
                    break
            else:
                try:
                    outcome = (await wait).raw_status
                except JobFailedError as error:
                    outcome = "failed " + error.job.raw_status
            polls = wait.polls
        else:
            timeout = None if resume else 7200
            # One poll at a time: time moves only while nothing is in flight, so every poll
            # sees the job as the same poll of an uninterrupted fan-out does.
            async with wait_for_jobs(
                client,
                setup["job_ids"],
                policy=policy,
                timeout=timeout,
                resume=resume,
                max_in_flight=1,
            ) as fanout:
                outcome = {}
                async for result in fanout:
                    outcome[result.job_id] = result.job.raw_status if result.job else None
                    if len(outcome) == stop_after:
                        checkpoint = fanout.checkpoint()
                        break
                polls = fanout.polls
    return {"checkpoint": checkpoint, "outcome": outcome, "polls": polls, "sleeps": clock.sleeps}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))

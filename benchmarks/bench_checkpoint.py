"""How large a checkpoint is per waiting job, and how long taking and resuming one takes.

Run from the repository root:

    .venv/bin/python benchmarks/bench_checkpoint.py [--jobs 2000] [--seed 1]

A `wait_for_jobs` fan-out waits on `--jobs` jobs of the fake service (in this process, over
real HTTP, in virtual time), UUID ids, durations log-uniform from 1 min to 2 h, progress
reported. When half of them have been handed out, it takes a checkpoint and prints: the
bytes of `json.dumps(checkpoint)` per pending job (target: at most 1024), and the time
`checkpoint()`, `json.dumps`, `json.loads` and `wait_for_jobs(..., resume=)` take per pending
job. The same for one `wait_for_job` checkpointed after a few snapshots, and what a SAQ
worker's link spends on that wait's checkpoint each poll (its compact form written and read
back, against the whole checkpoint's, medians). Exit status 2 when the size target is
missed, 1 when something broke.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from jobpoll import JobsClient, PollPolicy, wait_for_job, wait_for_jobs
from jobpoll._checkpoint import job_checkpoint, resume_job
from jobpoll._saq_form import link_checkpoint, resume_link
from jobpoll.testing import FakeJobsService, VirtualClock

TARGET_BYTES_PER_JOB = 1024


async def run(jobs: int, seed: int) -> int:
    rnd = random.Random(seed)
    clock = VirtualClock()
    policy = PollPolicy(
        clock=clock, sleep=clock.sleep, wall_clock=clock.wall, rng=random.Random(seed).random
    )
    async with (
        FakeJobsService(clock=clock) as service,
        JobsClient(service.api_key, base_url=service.base_url) as client,
    ):
        ids = [
            service.add_job(
                str(uuid.uuid4()), duration=math.exp(rnd.uniform(math.log(60), math.log(7200)))
            )
            for _ in range(jobs)
        ]
        async with wait_for_jobs(client, ids, policy=policy) as fanout:
            handed_out = 0
            async for _result in fanout:
                handed_out += 1
                if handed_out == jobs // 2:
                    break
            started = time.perf_counter()
            saved = fanout.checkpoint()
            took = time.perf_counter() - started
        pending = len(saved["jobs"]) + len(saved["unstarted"])
        started = time.perf_counter()
        text = json.dumps(saved)
        dumped = time.perf_counter() - started
        started = time.perf_counter()
        loaded = json.loads(text)
        parsed = time.perf_counter() - started
        started = time.perf_counter()
        resumed = wait_for_jobs(client, [], policy=policy, resume=loaded)
        restored = time.perf_counter() - started
        if resumed.total != pending:
            print(f"resumed {resumed.total} jobs, not {pending}", file=sys.stderr)
            return 1
        await resumed.aclose()
        per_job = len(text.encode()) / pending
        print(f"fan-out of {jobs} jobs, checkpointed with {pending} pending:")
        print(f"  {len(text.encode()):,} bytes of JSON, {per_job:.0f} bytes per pending job")
        for name, seconds in (
            ("checkpoint()", took),
            ("json.dumps", dumped),
            ("json.loads", parsed),
            ("wait_for_jobs(resume=)", restored),
        ):
            print(f"  {name:<24} {seconds * 1e6 / pending:6.1f} µs per job")

        job_id = service.add_job(str(uuid.uuid4()), duration=3600)
        wait = wait_for_job(client, job_id, policy=policy, timeout=7200)
        seen = 0
        async for _job in wait:
            seen += 1
            if seen == 4:
                break
        single = json.dumps(wait.checkpoint())
        print(f"one wait_for_job after 4 snapshots: {len(single.encode())} bytes of JSON")
        links_form(json.loads(single), job_id, policy)
    verdict = per_job <= TARGET_BYTES_PER_JOB
    print(
        f"bytes per pending job: {per_job:.0f} (target at most {TARGET_BYTES_PER_JOB}):"
        f" {'met' if verdict else 'MISSED'}"
    )
    return 0 if verdict else 2


def links_form(whole: dict[str, Any], job_id: str, policy: PollPolicy) -> None:
    """What a SAQ worker's link spends on its wait's checkpoint each poll: the links' form
    (`_saq_form`) written and read back, against the whole checkpoint written and read back
    (`JobWait.checkpoint()`, `resume_job`; the way the form went before), medians of rounds."""
    rules, state, _owed = resume_job(whole, job_id, policy)
    form = json.loads(json.dumps(link_checkpoint(rules, state)))
    timed = {
        "links' form, written": lambda: link_checkpoint(rules, state),
        "links' form, read": lambda: resume_link(form, job_id, policy),
        "whole checkpoint, written": lambda: job_checkpoint(rules, state),
        "whole checkpoint, read": lambda: resume_job(whole, job_id, policy),
    }
    figures = {name: _median_microseconds(call) for name, call in timed.items()}
    print(f"a SAQ link's checkpoint ({len(json.dumps(form))} bytes of JSON), per poll:")
    for name, microseconds in figures.items():
        print(f"  {name:<26} {microseconds:6.1f} µs")
    form_total = figures["links' form, written"] + figures["links' form, read"]
    whole_total = figures["whole checkpoint, written"] + figures["whole checkpoint, read"]
    print(
        f"  written and read: links' form {form_total:.1f} µs, whole checkpoint"
        f" {whole_total:.1f} µs ({form_total / whole_total:.2f}x)"
    )


def _median_microseconds(call: Callable[[], object], rounds: int = 7, calls: int = 2000) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        times.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()
    sys.exit(asyncio.run(run(arguments.jobs, arguments.seed)))


if __name__ == "__main__":
    main()

"""Fan-out at scale: `wait_for_jobs` on 10,000 jobs to the end, and 100,000 waiting at once.

Run from the repository root:

    .venv/bin/python benchmarks/bench_fanout.py [--jobs 10000] [--waiting 100000]
        [--baseline-waiting 10000] [--compare-jobs 2000] [--rounds 3]

The fake job service runs in a separate process (`python -m jobpoll.testing`), so the CPU time
counted here is the client's alone; it answers every new id with a job that runs for a set
time from its first poll (its progress grows evenly). Three parts, in real time:

1. Completion: `wait_for_jobs` on `--jobs` distinct jobs of 20 s each (`--job-seconds`), to
   the end, against a service that answers after 10 ms (as over a network, so requests
   overlap). It prints results lost (ids given but never reported, or reported twice: must
   be 0), jobs not ok, the peak of requests in flight that the service saw (against the
   bound), polls per job, client CPU seconds and CPU per poll.
2. CPU per poll against the single-job path, measured in the same run: `--compare-jobs` jobs
   waited on by `wait_for_jobs`, and as many `wait_for_job` awaited together with
   `asyncio.gather` (a task per job: what a user would write without a fan-out), in
   `--rounds` rounds whose order alternates. It prints the median of the per-round ratios
   (fan-out / single), against the target of at most 1.15x.
3. Memory: `--waiting` jobs of 10 hours waited on at once, each polled once, then the resident
   memory the wait added is read, per waiting job, against the target of 2 KiB. Each side
   runs in a fresh child process (so memory freed by one side does not flatter the next):
   `wait_for_jobs`, then, as the baseline, `--baseline-waiting` `wait_for_job` tasks
   gathered. The baseline is smaller because it does not scale: 100,000 tasks queue 100,000
   requests on a pool of 32 connections at once, their connect timeouts expire in the queue,
   and they retry in a storm (a run was stopped after 5 CPU minutes and 1 GB).

The exit status is 0 whatever the figures; it is non-zero only when something broke.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import aiohttp
from _common import (
    BenchmarkError,
    Service,
    exit_on_sigterm,
    exit_status,
    fake_service,
    positive_int,
)

import jobpoll
from jobpoll import Job, JobsClient, wait_for_job, wait_for_jobs

LATENCY = 0.01
WAITING_SECONDS = 36_000.0
CPU_TARGET = 1.15
MEMORY_TARGET = 2048
MEMORY_SIDES = ("fan-out", "tasks")


def fresh_ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


# 1. Completion -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    jobs: int
    bound: int
    lost: int
    not_ok: int
    polls: int
    cpu: float
    wall: float


async def run_completion(service: Service, jobs: int) -> Completion:
    ids = fresh_ids(jobs)
    async with JobsClient(service.api_key, base_url=service.base_url) as client:
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        seen: dict[str, int] = dict.fromkeys(ids, 0)
        not_ok = 0
        fanout = wait_for_jobs(client, ids)
        async with fanout:
            async for result in fanout:
                seen[result.job_id] = seen.get(result.job_id, 0) + 1
                not_ok += not result.ok
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    lost = sum(1 for count in seen.values() if count != 1) + len(seen) - jobs
    return Completion(jobs, client.pool_size, lost, not_ok, fanout.polls, cpu, wall)


# 2. CPU per poll against the single-job path -------------------------------------------------


async def cpu_per_poll(service: Service, side: str, jobs: int) -> float:
    """Client CPU seconds per poll for one side waiting on `jobs` fresh jobs to the end."""
    ids = fresh_ids(jobs)
    async with JobsClient(service.api_key, base_url=service.base_url) as client:
        gc.collect()
        start = time.process_time()
        if side == "fan-out":
            fanout = wait_for_jobs(client, ids)
            results = await fanout
            polls = fanout.polls
            if not all(result.ok for result in results):
                raise BenchmarkError("a job of the fan-out did not finish")
        else:
            waits = [wait_for_job(client, job_id) for job_id in ids]
            await asyncio.gather(*waits)
            polls = sum(wait.polls for wait in waits)
        return (time.process_time() - start) / polls


async def run_comparison(service: Service, jobs: int, rounds: int) -> list[tuple[float, float]]:
    """(fan-out, single) CPU per poll for each round; the side that starts alternates."""
    figures = []
    for number in range(rounds):
        order = ("fan-out", "single") if number % 2 == 0 else ("single", "fan-out")
        measured = {side: await cpu_per_poll(service, side, jobs) for side in order}
        figures.append((measured["fan-out"], measured["single"]))
        print(
            f"  round {number + 1}: fan-out {measured['fan-out'] * 1e6:6.1f} µs, single "
            f"{measured['single'] * 1e6:6.1f} µs CPU per poll, ratio "
            f"{measured['fan-out'] / measured['single']:.2f}x",
            flush=True,
        )
    return figures


# 3. Memory per waiting job (each side in a child process) ------------------------------------


def resident_bytes() -> int:
    """This process's resident memory now (Linux), or its peak where /proc is missing."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


async def measure_waiting(base_url: str, api_key: str, side: str, jobs: int) -> dict[str, float]:
    """Wait on `jobs` long jobs at once until each has been seen once; measure, then cancel."""
    ids = fresh_ids(jobs)
    seen = 0
    everyone_seen = asyncio.Event()

    def count(_job: Job) -> None:
        nonlocal seen
        seen += 1
        if seen == jobs:
            everyone_seen.set()

    async with JobsClient(api_key, base_url=base_url) as client:
        await client.get_job(str(uuid.uuid4()))  # the session and its pool exist before
        gc.collect()
        before, cpu = resident_bytes(), time.process_time()
        if side == "fan-out":
            fanout = wait_for_jobs(client, ids, on_update=count)
            task = asyncio.ensure_future(anext(fanout))
        else:
            waits = [wait_for_job(client, job_id, on_update=count) for job_id in ids]
            task = asyncio.ensure_future(asyncio.gather(*waits))
        seen_all = asyncio.ensure_future(everyone_seen.wait())
        await asyncio.wait((task, seen_all), return_when=asyncio.FIRST_COMPLETED)
        if task.done():  # the wait ended before every job was seen: something broke
            seen_all.cancel()
            task.result()
            raise BenchmarkError(f"the {side} wait ended after {seen} of {jobs} jobs were seen")
        gc.collect()
        after, cpu = resident_bytes(), time.process_time() - cpu
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if side == "fan-out":
            await fanout.aclose()
    return {"bytes_per_job": (after - before) / jobs, "cpu": cpu, "seen": seen}


def run_memory_side(service: Service, side: str, jobs: int) -> dict[str, float]:
    command = [
        sys.executable,
        __file__,
        "--memory-side",
        side,
        "--waiting",
        str(jobs),
        "--base-url",
        service.base_url,
        "--api-key",
        service.api_key,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchmarkError(f"the {side} memory run failed:\n{done.stderr}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


# Command line ---------------------------------------------------------------------------------


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="wait_for_jobs at scale, against a fake service.")
    parser.add_argument("--jobs", type=positive_int, default=10_000, help="jobs run to the end")
    parser.add_argument(
        "--waiting", type=positive_int, default=100_000, help="jobs waited on at once"
    )
    parser.add_argument(
        "--compare-jobs", type=positive_int, default=2000, help="jobs per CPU comparison side"
    )
    parser.add_argument("--rounds", type=positive_int, default=3, help="CPU comparison rounds")
    parser.add_argument(
        "--job-seconds",
        type=float,
        default=20.0,
        help="how long each job of parts 1 and 2 runs",
    )
    parser.add_argument(
        "--baseline-waiting",
        type=positive_int,
        default=10_000,
        help="wait_for_job tasks waiting at once, for the memory baseline",
    )
    parser.add_argument("--memory-side", choices=MEMORY_SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


@exit_status
def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.memory_side:  # a child process of part 3
        figures = asyncio.run(
            measure_waiting(
                arguments.base_url, arguments.api_key, arguments.memory_side, arguments.waiting
            )
        )
        print(json.dumps(figures))
        return 0
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    print(
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
        f"jobpoll {jobpoll.__version__}, {os.cpu_count()} CPUs"
    )
    seconds = arguments.job_seconds
    with fake_service(auto_create_duration=seconds, latency=LATENCY) as service:
        completion = asyncio.run(run_completion(service, arguments.jobs))
    print(
        f"1. {completion.jobs} jobs of {seconds:g} s to the end, default bound, "
        f"answers after {LATENCY * 1000:g} ms"
    )
    print(f"  results lost:            {completion.lost} (must be 0)")
    print(f"  jobs not ok:             {completion.not_ok}")
    print(
        f"  peak requests in flight: {service.counters.get('peak_in_flight')} "
        f"(bound: the client's pool, {completion.bound})"
    )
    print(f"  polls per job:           {completion.polls / completion.jobs:.2f}")
    print(
        f"  client CPU:              {completion.cpu:.1f} s "
        f"({completion.cpu / completion.polls * 1e6:.0f} µs per poll), "
        f"wall {completion.wall:.1f} s"
    )

    print(f"2. CPU per poll, {arguments.compare_jobs} jobs per side, {arguments.rounds} rounds")
    with fake_service(auto_create_duration=seconds) as service:
        rounds = asyncio.run(run_comparison(service, arguments.compare_jobs, arguments.rounds))
    ratio = statistics.median(fan / single for fan, single in rounds)
    verdict = "met" if ratio <= CPU_TARGET else "NOT met"
    print(
        f"  fan-out / single, median of rounds: {ratio:.2f}x  "
        f"target <= {CPU_TARGET:.2f}x: {verdict}"
    )

    print(f"3. {arguments.waiting} jobs of {WAITING_SECONDS / 3600:g} h waited on at once")
    memory = {}
    with fake_service(auto_create_duration=WAITING_SECONDS) as service:
        for side, count in (
            ("fan-out", arguments.waiting),
            ("tasks", arguments.baseline_waiting),
        ):
            figures = memory[side] = run_memory_side(service, side, count)
            print(
                f"  {side:<8} {count:>6} jobs: {figures['bytes_per_job']:7.0f} bytes "
                f"resident per waiting job, {figures['cpu']:.1f} s CPU for the first poll "
                "of each",
                flush=True,
            )
    fan_out = memory["fan-out"]["bytes_per_job"]
    verdict = "met" if fan_out <= MEMORY_TARGET else "NOT met"
    print(
        f"  fan-out / tasks: {fan_out / memory['tasks']['bytes_per_job']:.2f}x  "
        f"target <= {MEMORY_TARGET} bytes per job: {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

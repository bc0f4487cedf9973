"""Lean at scale: event-loop stalls, memory per waiting job and CPU per poll, on both loops.

Run from the repository root:

    .venv/bin/python benchmarks/bench_scale.py [--sizes 10000,100000,1000000]
        [--loops asyncio,uvloop] [--steady 10] [--steady-max 120] [--skip-cpu]
        [--cpu-calls 400] [--cpu-rounds 7]

The fake job service runs in another process (`python -m jobpoll.testing`, a fresh one for
each run), so what is measured here is the client's alone. Every part runs in a fresh child
process per event loop (asyncio's own, and uvloop's when installed, chosen with
`asyncio.Runner(loop_factory=...)`: no loop policy is installed), so memory freed by one run
does not flatter the next. Two parts:

1. **Scale**, for each size: `wait_for_jobs` on that many jobs of 10 hours (they keep waiting),
   with a ticker task beside it that sleeps 5 ms at a time and records how late it wakes: the
   longest event-loop stall, in the first round of polls (from the call until every job has
   been seen once, set-up included) and in steady state (at least `--steady` seconds after
   that, and until a full (generation 2) garbage collection has run, at most `--steady-max`
   seconds). It also prints the longest full collection it saw (`gc.callbacks`: watched,
   not tuned), the resident memory the fan-out added per waiting job (read after the steady
   state, after `gc.collect()`), the polls per second, and the client's CPU per poll.
2. **CPU per poll** against a bare aiohttp loop (`session.get(...)` then `json.loads(await
   response.read())`) with the same pool size (the client's default pool) and the same number
   of callers, 1 and 50, each caller fetching its own job again and again: `--cpu-rounds`
   rounds of blocks that alternate between the sides (ABBA...), the median of the per-round
   ratios of CPU time (jobpoll / bare).

Targets: no stall over 50 ms at 100,000 waiting jobs (first round and steady state) and none
over 250 ms at 1,000,000; at most 600 bytes of resident memory per waiting job at 100,000
(moonshot 512); CPU per poll at most 1.08x the bare loop's, one caller and fifty (moonshot
1.05x). Sizes other than these are printed without a target. Exit status: 0 when every target
measured is met, 2 when one is missed, 1 when something broke.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from _common import (
    BenchmarkError,
    exit_on_sigterm,
    exit_status,
    fake_service,
    positive_int,
)

import jobpoll
from jobpoll import Job, JobsClient, wait_for_jobs

WAITING_SECONDS = 36_000.0
TICK = 0.005
STALL_TARGETS = {100_000: 0.050, 1_000_000: 0.250}
MEMORY_SIZE = 100_000
MEMORY_TARGET = 600
MEMORY_MOONSHOT = 512
CPU_TARGET = 1.08
CPU_MOONSHOT = 1.05
CALLERS = (1, 50)
JOBS_PATH = "/bankaccounts/jobs"
#: How long a child run may take before it counts as broken (a million jobs take minutes).
CHILD_TIMEOUT = 3600.0


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop to run on, by name; uvloop's only when it is installed."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def available_loops() -> list[str]:
    return ["asyncio", "uvloop"] if importlib.util.find_spec("uvloop") else ["asyncio"]


def resident_bytes() -> int:
    """This process's resident memory now (Linux), or its peak where /proc is missing."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# 1. Scale: stalls and memory -------------------------------------------------------------------


@dataclass
class Ticker:
    """A task that sleeps `TICK` at a time and keeps, per phase, the longest lateness (the
    stall) and the most CPU time the process spent between two ticks (the loop held: on a
    shared machine a stall is also the process waiting for a core, which this tells apart)."""

    phase: str = "first"
    longest: dict[str, float] = field(default_factory=lambda: {"first": 0.0, "steady": 0.0})
    held: dict[str, float] = field(default_factory=lambda: {"first": 0.0, "steady": 0.0})

    async def run(self) -> None:
        last, last_cpu = time.perf_counter(), time.thread_time()
        while True:
            await asyncio.sleep(TICK)
            now, cpu = time.perf_counter(), time.thread_time()
            late = now - last - TICK
            if late > self.longest[self.phase]:
                self.longest[self.phase] = late
            if cpu - last_cpu > self.held[self.phase]:
                self.held[self.phase] = cpu - last_cpu
            last, last_cpu = now, cpu


@dataclass
class FullCollections:
    """Watches (never tunes) the collector: how many full collections ran, and the longest."""

    count: int = 0
    longest: float = 0.0
    _started: float = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.count += 1
            self.longest = max(self.longest, time.perf_counter() - self._started)


async def measure_scale(
    base_url: str, api_key: str, size: int, steady: float, steady_max: float
) -> dict[str, Any]:
    """Wait on `size` long jobs with a ticker beside; the figures of part 1."""
    ids = [str(uuid.uuid4()) for _ in range(size)]  # the caller's list: not counted
    seen = 0
    everyone_seen = asyncio.Event()

    def count(_job: Job) -> None:
        nonlocal seen
        seen += 1
        if seen == size:
            everyone_seen.set()

    async with JobsClient(api_key, base_url=base_url) as client:
        await client.get_job(str(uuid.uuid4()))  # the session and its pool exist before
        gc.collect()
        before = resident_bytes()
        ticker = Ticker()
        ticking = asyncio.create_task(ticker.run())
        await asyncio.sleep(0.1)
        ticker.longest["first"] = ticker.held["first"] = 0.0
        collections = FullCollections()
        gc.callbacks.append(collections)
        try:
            cpu, wall = time.process_time(), time.perf_counter()
            fanout = wait_for_jobs(client, ids, on_update=count)
            iterating = asyncio.ensure_future(anext(fanout))
            seen_all = asyncio.ensure_future(everyone_seen.wait())
            await asyncio.wait((iterating, seen_all), return_when=asyncio.FIRST_COMPLETED)
            if iterating.done():
                seen_all.cancel()
                iterating.result()
                raise BenchmarkError(f"the fan-out ended after {seen} of {size} jobs were seen")
            first_round = time.perf_counter() - wall
            first_collections = collections.count
            ticker.phase = "steady"
            steady_start = time.perf_counter()
            polls_at_steady = fanout.polls
            while True:
                await asyncio.sleep(0.5)
                elapsed = time.perf_counter() - steady_start
                if elapsed >= steady_max or (
                    elapsed >= steady and collections.count > first_collections
                ):
                    break
            steady_polls = fanout.polls - polls_at_steady
            polls, cpu = fanout.polls, time.process_time() - cpu
            ticking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticking
        finally:
            gc.callbacks.remove(collections)
        gc.collect()
        after = resident_bytes()
        iterating.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await iterating
        await fanout.aclose()
    return {
        "stall_first": ticker.longest["first"],
        "stall_steady": ticker.longest["steady"],
        "held_first": ticker.held["first"],
        "held_steady": ticker.held["steady"],
        "full_gcs": collections.count,
        "full_gcs_steady": collections.count - first_collections,
        "longest_full_gc": collections.longest,
        "bytes_per_job": (after - before) / size,
        "first_round": first_round,
        "steady_seconds": elapsed,
        "polls_per_second": steady_polls / elapsed,
        "cpu_per_poll": cpu / polls,
    }


# 2. CPU per poll against the bare loop --------------------------------------------------------


async def measure_cpu(
    base_url: str, api_key: str, callers: int, calls: int, rounds: int
) -> dict[str, Any]:
    """Per-round CPU per call of both sides, `callers` at a time on pools of equal size."""
    job_ids = [str(uuid.uuid4()) for _ in range(callers)]
    async with JobsClient(api_key, base_url=base_url) as client:
        connector = aiohttp.TCPConnector(limit=client.pool_size, limit_per_host=client.pool_size)
        async with aiohttp.ClientSession(connector=connector) as session:
            url = base_url + JOBS_PATH
            headers = {"X-API-KEY": api_key}

            async def bare_caller(job_id: str) -> None:
                for _ in range(calls):
                    async with session.get(url, params={"jobId": job_id}, headers=headers) as r:
                        data = json.loads(await r.read())
                if data["id"] != job_id:
                    raise BenchmarkError(f"the bare loop read job {data['id']}")

            async def jobpoll_caller(job_id: str) -> None:
                for _ in range(calls):
                    job = await client.get_job(job_id)
                if job.id != job_id:
                    raise BenchmarkError(f"jobpoll read job {job.id}")

            sides: dict[str, Callable[[str], Awaitable[None]]] = {
                "bare": bare_caller,
                "jobpoll": jobpoll_caller,
            }

            async def block(side: str) -> float:
                start = time.process_time()
                await asyncio.gather(*(sides[side](job_id) for job_id in job_ids))
                return time.process_time() - start

            for side in sides:  # warm-up: connections opened, jobs created on the server
                await block(side)
            figures: list[tuple[float, float]] = []
            for number in range(rounds):
                cpu = {"bare": 0.0, "jobpoll": 0.0}
                order = ["bare", "jobpoll"] if number % 2 else ["jobpoll", "bare"]
                gc.collect()
                for index in range(4):  # ABBA
                    for side in order if index % 2 == 0 else order[::-1]:
                        cpu[side] += await block(side)
                total = 4 * calls * callers
                figures.append((cpu["bare"] / total, cpu["jobpoll"] / total))
    return {"rounds": figures}


# The parent: one child per (part, loop), results side by side -----------------------------


def run_child(arguments: list[str]) -> dict[str, Any]:
    command = [sys.executable, __file__, *arguments]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=CHILD_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"a child run took over {CHILD_TIMEOUT:g} s: {arguments}") from exc
    if done.returncode != 0:
        raise BenchmarkError(f"a child run failed ({arguments}):\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def report_scale(arguments: argparse.Namespace, loops: list[str], misses: list[str]) -> None:
    print(
        f"1. Scale: jobs of {WAITING_SECONDS / 3600:g} h waited on at once, a {TICK * 1000:g} ms "
        "ticker beside"
    )
    header = (
        f"  {'jobs':>9} {'loop':<8} {'stall first':>11} {'stall steady':>12} "
        f"{'CPU held':>15} {'full GCs':>8} {'longest GC':>10} {'B/job':>6} "
        f"{'1st round':>9} {'polls/s':>7} {'µs CPU/poll':>11}"
    )
    print(header, flush=True)
    for size in arguments.sizes:
        for loop in loops:
            with fake_service(auto_create_duration=WAITING_SECONDS) as service:
                figures = run_child(
                    [
                        *("--child-scale", str(size), "--loop", loop),
                        *("--base-url", service.base_url, "--api-key", service.api_key),
                        *("--steady", str(arguments.steady)),
                        *("--steady-max", str(arguments.steady_max)),
                    ]
                )
            print(
                f"  {size:>9,} {loop:<8} {figures['stall_first'] * 1000:>8.1f} ms "
                f"{figures['stall_steady'] * 1000:>9.1f} ms "
                f"{figures['held_first'] * 1000:>5.1f} / {figures['held_steady'] * 1000:>5.1f} ms "
                f"{figures['full_gcs']:>4} ({figures['full_gcs_steady']})"
                f" {figures['longest_full_gc'] * 1000:>7.1f} ms "
                f"{figures['bytes_per_job']:>6.0f} {figures['first_round']:>8.1f}s "
                f"{figures['polls_per_second']:>7.0f} {figures['cpu_per_poll'] * 1e6:>11.1f}",
                flush=True,
            )
            limit = STALL_TARGETS.get(size)
            if limit is not None:
                for phase in ("first", "steady"):
                    if figures[f"stall_{phase}"] > limit:
                        misses.append(
                            f"stall ({phase}) at {size:,} on {loop}: "
                            f"{figures[f'stall_{phase}'] * 1000:.0f} ms > {limit * 1000:g} ms"
                        )
            if size == MEMORY_SIZE and figures["bytes_per_job"] > MEMORY_TARGET:
                misses.append(
                    f"memory at {size:,} on {loop}: {figures['bytes_per_job']:.0f} B per job "
                    f"> {MEMORY_TARGET} B"
                )
    print(
        "  (stall: how late the ticker woke, first round and steady state; CPU held: the most "
        "CPU time\n  spent between two ticks, first round / steady state; full GCs: all, and in "
        "steady state in\n  brackets; B/job: resident bytes per waiting job)"
    )
    print(
        f"  targets: stall <= 50 ms at 100,000 and <= 250 ms at 1,000,000 (first round and "
        f"steady state); <= {MEMORY_TARGET} B per waiting job at 100,000 "
        f"(moonshot {MEMORY_MOONSHOT} B)"
    )


def report_cpu(arguments: argparse.Namespace, loops: list[str], misses: list[str]) -> None:
    print(
        f"2. CPU per poll against a bare aiohttp GET + json.loads loop, same pool and callers, "
        f"{arguments.cpu_rounds} rounds"
    )
    print(
        f"  {'callers':>7} {'loop':<8} {'bare µs':>8} {'jobpoll µs':>10} {'ratio':>6} "
        f"{'rounds (min-max)':>17}",
        flush=True,
    )
    with fake_service(auto_create_duration=86400.0) as service:
        for callers in CALLERS:
            calls = max(1, arguments.cpu_calls // callers)
            for loop in loops:
                figures = run_child(
                    [
                        *("--child-cpu", str(callers), "--loop", loop),
                        *("--base-url", service.base_url, "--api-key", service.api_key),
                        *("--cpu-calls", str(calls), "--cpu-rounds", str(arguments.cpu_rounds)),
                    ]
                )
                rounds = figures["rounds"]
                ratios = [jobpoll / bare for bare, jobpoll in rounds]
                ratio = statistics.median(ratios)
                print(
                    f"  {callers:>7} {loop:<8} "
                    f"{statistics.median(b for b, _ in rounds) * 1e6:>8.1f} "
                    f"{statistics.median(j for _, j in rounds) * 1e6:>10.1f} "
                    f"{ratio:>5.3f}x {min(ratios):>7.3f}-{max(ratios):.3f}",
                    flush=True,
                )
                if ratio > CPU_TARGET:
                    misses.append(
                        f"CPU per poll, {callers} caller(s) on {loop}: {ratio:.3f}x > {CPU_TARGET}x"
                    )
    print(f"  target: <= {CPU_TARGET}x (moonshot {CPU_MOONSHOT}x), median of the rounds' ratios")


def parse_sizes(text: str) -> list[int]:
    sizes = [positive_int(part.strip().replace("_", "")) for part in text.split(",") if part]
    if not sizes:
        raise argparse.ArgumentTypeError("no size given")
    return sizes


def parse_loops(text: str) -> list[str]:
    loops = [part.strip() for part in text.split(",") if part.strip()]
    unknown = set(loops) - {"asyncio", "uvloop"}
    if unknown or not loops:
        raise argparse.ArgumentTypeError(f"loops are asyncio and uvloop, got {text!r}")
    return loops


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Event-loop stalls, memory per job and CPU per poll of jobpoll at scale."
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=[10_000, 100_000, 1_000_000],
        help="comma-separated numbers of waiting jobs (default 10000,100000,1000000)",
    )
    parser.add_argument(
        "--loops",
        type=parse_loops,
        default=None,
        help="comma-separated event loops: asyncio, uvloop (default: both, when installed)",
    )
    parser.add_argument(
        "--steady", type=float, default=10.0, help="least seconds of steady state per size"
    )
    parser.add_argument(
        "--steady-max",
        type=float,
        default=120.0,
        help="most seconds of steady state, waiting for a full garbage collection",
    )
    parser.add_argument("--skip-cpu", action="store_true", help="leave out part 2")
    parser.add_argument("--skip-scale", action="store_true", help="leave out part 1")
    parser.add_argument(
        "--cpu-calls",
        type=positive_int,
        default=400,
        help="calls per block of one side, over all its callers (rounds are 4 blocks a side)",
    )
    parser.add_argument("--cpu-rounds", type=positive_int, default=7, help="CPU rounds")
    parser.add_argument("--child-scale", type=positive_int, help=argparse.SUPPRESS)
    parser.add_argument("--child-cpu", type=positive_int, help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_as_child(arguments: argparse.Namespace) -> int:
    main: Awaitable[dict[str, Any]]
    if arguments.child_scale:
        main = measure_scale(
            arguments.base_url,
            arguments.api_key,
            arguments.child_scale,
            arguments.steady,
            arguments.steady_max,
        )
    else:
        main = measure_cpu(
            arguments.base_url,
            arguments.api_key,
            arguments.child_cpu,
            arguments.cpu_calls,
            arguments.cpu_rounds,
        )
    with asyncio.Runner(loop_factory=loop_factory(arguments.loop)) as runner:
        figures = runner.run(main)  # type: ignore[arg-type]
    print(json.dumps(figures))
    return 0


@exit_status
def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.child_scale or arguments.child_cpu:
        return run_as_child(arguments)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    loops = arguments.loops or available_loops()
    if "uvloop" in loops and "uvloop" not in available_loops():
        raise BenchmarkError("uvloop is not installed: pip install 'jobpoll[uvloop]'")
    versions = f"aiohttp {aiohttp.__version__}, jobpoll {jobpoll.__version__}"
    if "uvloop" in loops:
        import uvloop

        versions += f", uvloop {uvloop.__version__}"
    print(f"Python {platform.python_version()}, {versions}, {os.cpu_count()} CPUs")
    misses: list[str] = []
    if not arguments.skip_scale:
        report_scale(arguments, loops, misses)
    if not arguments.skip_cpu:
        report_cpu(arguments, loops, misses)
    if misses:
        print("targets missed:")
        for miss in misses:
            print(f"  - {miss}")
        return 2
    print("every target measured: met")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Client CPU time per `JobsClient.get_job` call, against a plain aiohttp loop.

Run from the repository root:

    .venv/bin/python benchmarks/bench_client.py [--calls 2000] [--rounds 7] [--block 50]

The fake job service runs in a separate process (`python -m jobpoll.testing`) on 127.0.0.1,
so `time.process_time()` here counts the client's CPU only. Both sides fetch the same job, one
request at a time, over one kept-alive connection pool each:

- plain: one `aiohttp.ClientSession` (default connector), `session.get(...)` then
  `json.loads(await response.read())`;
- jobpoll: one `JobsClient`, `await client.get_job(job_id)` (validation, timeouts, a capped
  read, and decoding into a `Job`).

After a warm-up of both sides, each round runs N calls per side, the two sides taking turns
every 50 calls (A B B A A B ...; the side that starts alternates by round), so that noise on
a shared machine hits both alike. On a shared 2-core box, two identical plain loops gave
per-round ratios from 0.7x to 1.2x (standard deviation 0.10-0.15) when each ran its whole
round in one go (`--block` equal to `--calls`), and 0.95x to 1.06x (0.02-0.03) in 50-call turns.
The program prints each round's CPU and wall time per call, the medians, and the median of the
per-round CPU ratios (jobpoll / plain) against the target. The exit status is 0 whatever the
ratio; it is non-zero only when something broke.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

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
from jobpoll import JobsClient

DEFAULT_CALLS = 2000
DEFAULT_ROUNDS = 7
#: Calls per block: within a round the sides alternate every block (see `run_round`).
DEFAULT_BLOCK = 50
WARMUP_CALLS = 300
TARGET_RATIO = 1.15
JOB_ID = "35f23c03-1c22-45fe-9484-3ffe769325de"
JOBS_PATH = "/bankaccounts/jobs"
SERVER_START_TIMEOUT = 20.0
SERVER_STOP_TIMEOUT = 5.0
LOOPBACK_HOST = "127.0.0.1"

#: One side of the benchmark: fetch the job `calls` times in a row, return the last answer's id.
Side = Callable[[int], Awaitable[str]]


@dataclass(frozen=True)
class Timing:
    """One side's figures for one round, per call."""

    cpu_us: float
    wall_us: float


@dataclass(frozen=True)
class Round:
    """One round: both sides, and which ran first."""

    number: int
    first: str
    plain: Timing
    jobpoll: Timing

    @property
    def ratio(self) -> float:
        return self.jobpoll.cpu_us / self.plain.cpu_us


# The two sides ----------------------------------------------------------------------------


def plain_side(session: aiohttp.ClientSession, service: Service) -> Side:
    url = service.base_url + JOBS_PATH
    headers = {"X-API-KEY": service.api_key}

    async def run(calls: int) -> str:
        data: Any = None
        for _ in range(calls):
            async with session.get(url, params={"jobId": JOB_ID}, headers=headers) as r:
                data = json.loads(await r.read())
        return str(data["id"]) if isinstance(data, dict) else repr(data)

    return run


def jobpoll_side(client: JobsClient) -> Side:
    async def run(calls: int) -> str:
        job = None
        for _ in range(calls):
            job = await client.get_job(JOB_ID)
        return job.id if job is not None else ""

    return run


@dataclass
class Tally:
    """One side's CPU and wall seconds in a round, summed over its blocks."""

    cpu: float = 0.0
    wall: float = 0.0

    def per_call(self, calls: int) -> Timing:
        return Timing(cpu_us=self.cpu / calls * 1e6, wall_us=self.wall / calls * 1e6)


async def timed(side: Side, calls: int, tally: Tally) -> None:
    """Run `side` for `calls` calls and add its CPU and wall time to `tally`."""
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    last_id = await side(calls)
    tally.cpu += time.process_time() - cpu_start
    tally.wall += time.perf_counter() - wall_start
    if last_id != JOB_ID:
        raise BenchmarkError(f"expected job {JOB_ID}, got {last_id!r}")


async def run_round(sides: dict[str, Side], number: int, calls: int, block: int) -> Round:
    """`calls` calls per side, in alternating blocks of `block` (ABBA...), so both sides see
    the same machine noise; the side that starts alternates from one round to the next."""
    names = ["plain", "jobpoll"] if number % 2 else ["jobpoll", "plain"]
    tallies = {name: Tally() for name in names}
    gc.collect()
    for index, start in enumerate(range(0, calls, block)):
        size = min(block, calls - start)
        for name in names if index % 2 == 0 else names[::-1]:
            await timed(sides[name], size, tallies[name])
    return Round(
        number, names[0], tallies["plain"].per_call(calls), tallies["jobpoll"].per_call(calls)
    )


async def run_rounds(service: Service, calls: int, rounds: int, block: int) -> list[Round]:
    """Warm both sides up, then time them in `rounds` interleaved rounds."""
    async with (
        aiohttp.ClientSession() as session,
        JobsClient(service.api_key, base_url=service.base_url) as client,
    ):
        sides = {"plain": plain_side(session, service), "jobpoll": jobpoll_side(client)}
        for side in sides.values():
            await timed(side, WARMUP_CALLS, Tally())
        results = []
        for number in range(1, rounds + 1):
            result = await run_round(sides, number, calls, block)
            print_round(result)
            results.append(result)
        return results


# Reporting ----------------------------------------------------------------------------------


def print_header(calls: int, rounds: int, block: int) -> None:
    print(
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
        f"jobpoll {jobpoll.__version__}; {rounds} rounds x {calls} calls per side, "
        f"alternating every {min(block, calls)} calls (warm-up {WARMUP_CALLS})"
    )
    print(
        f"{'round':>5}  {'first':<7}  {'plain cpu':>10}  {'plain wall':>10}  "
        f"{'jobpoll cpu':>11}  {'jobpoll wall':>12}  {'ratio':>6}   (µs per call)"
    )


def print_round(result: Round) -> None:
    print(
        f"{result.number:>5}  {result.first:<7}  {result.plain.cpu_us:>10.1f}  "
        f"{result.plain.wall_us:>10.1f}  {result.jobpoll.cpu_us:>11.1f}  "
        f"{result.jobpoll.wall_us:>12.1f}  {result.ratio:>5.2f}x",
        flush=True,
    )


def print_summary(results: list[Round]) -> None:
    median = statistics.median
    plain_cpu = median(r.plain.cpu_us for r in results)
    jobpoll_cpu = median(r.jobpoll.cpu_us for r in results)
    plain_wall = median(r.plain.wall_us for r in results)
    jobpoll_wall = median(r.jobpoll.wall_us for r in results)
    ratio = median(r.ratio for r in results)
    print(f"median plain:   {plain_cpu:7.1f} µs CPU/call  ({plain_wall:.1f} µs wall)")
    print(f"median jobpoll: {jobpoll_cpu:7.1f} µs CPU/call  ({jobpoll_wall:.1f} µs wall)")
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(f"ratio (median of rounds): {ratio:.2f}x  target <= {TARGET_RATIO:.2f}x: {verdict}")


# Command line ---------------------------------------------------------------------------------


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Client CPU per JobsClient.get_job call against a plain aiohttp loop."
    )
    parser.add_argument(
        "--calls", type=positive_int, default=DEFAULT_CALLS, help="calls per side per round"
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=DEFAULT_ROUNDS, help="interleaved rounds"
    )
    parser.add_argument(
        "--block",
        type=positive_int,
        default=DEFAULT_BLOCK,
        help="calls per block; the sides alternate every block (--block = --calls: A then B)",
    )
    return parser.parse_args(argv)


@exit_status
def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    print_header(arguments.calls, arguments.rounds, arguments.block)
    with fake_service(auto_create_duration=86400) as service:
        results = asyncio.run(
            run_rounds(service, arguments.calls, arguments.rounds, arguments.block)
        )
    print_summary(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

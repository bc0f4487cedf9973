"""Polls per job and detection latency of the default `PollPolicy`, against fixed and
exponential baselines, on the fake service in virtual time.

Run from the repository root:

    .venv/bin/python benchmarks/bench_wait.py [--jobs 300] [--seed 1]

Detection latency is the time from a job's real end to the poll that saw it ended: what a
caller of `wait_for_job` loses to the schedule, and what the schedule trades against the
number of requests it sends.

One `FakeJobsService` runs in this process on 127.0.0.1, and one `JobsClient` polls it over
real HTTP; both, and every `PollPolicy`, run on one `VirtualClock`, so a two-hour job is
waited for in milliseconds and the times read are exact (no request takes virtual time). The
jobs are waited for one after another, since the clock models one waiter at a time.

Job durations are drawn log-uniform from 5 s to 2 h, and every schedule waits on the same
list of durations:

- default: `PollPolicy()` (progress-aware), only its clock, sleep and random numbers injected;
- fixed 5 s and fixed 30 s: one poll every 5 or 30 s, no jitter;
- expo full jitter: 1 s doubling to 60 s, each delay drawn from 0 to its nominal value
  (`jitter=1.0`, backoff's "full jitter").

For each job it reads the virtual time the job ends (its start plus its duration), the
virtual time of the poll that saw the terminal status (from `on_update`), and the polls sent
(`JobWait.polls`, checked against the requests the service counted for that job). Durations
and jitter each come from their own generator seeded from `--seed`, so a run repeats exactly.

It prints one row per schedule and duration band: the polls per job (mean), the detection
latency (mean and 95th percentile, nearest rank) and the 95th percentile of latency as a share
of the job's duration. Then the HTTP requests sent and the wall time they took, and a last
line with the default's polls per job and p95 latency as ratios to each baseline's (over all
jobs). The exit status is non-zero only when something broke.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import math
import platform
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import attrs
from _common import BenchmarkError, Row, Sample, exit_status, positive_int, wait_and_check

import jobpoll
from jobpoll import JobsClient, PollPolicy
from jobpoll.testing import FakeJobsService, VirtualClock

DEFAULT_JOBS = 300
DEFAULT_SEED = 1
SHORTEST_JOB = 5.0
LONGEST_JOB = 2 * 3600.0
#: Upper edges of the duration bands, in seconds; the last band runs to `LONGEST_JOB`.
BAND_EDGES = (30.0, 300.0, 1800.0)
BAND_LABELS = ("5-30 s", "30 s-5 min", "5-30 min", "30 min-2 h")
ALL_LABEL = "all"


@dataclass(frozen=True)
class Schedule:
    """A named poll schedule: `template` holds its options, the run injects the rest."""

    name: str
    template: PollPolicy

    def policy(self, clock: VirtualClock, seed: int) -> PollPolicy:
        """The schedule on the run's virtual clock. Each schedule draws the same jitter
        stream, apart from the durations' own, so the schedules differ only by their options."""
        rng = random.Random(f"{seed}/jitter").random
        return attrs.evolve(self.template, clock=clock, sleep=clock.sleep, rng=rng)

    def describe(self) -> str:
        policy = self.template
        if policy.factor == 1 and not policy.jitter:
            return f"every {policy.initial:g} s"
        blind = (
            f"{policy.initial:g} s x{policy.factor:g} up to {policy.max_interval:g} s, "
            f"jitter {policy.jitter:.0%}"
        )
        return f"progress-aware, blind {blind}" if policy.progress_aware else blind


SCHEDULES = (
    Schedule("default", PollPolicy()),
    Schedule(
        "fixed 5 s",
        PollPolicy(initial=5, factor=1, max_interval=5, jitter=0, progress_aware=False),
    ),
    Schedule(
        "fixed 30 s",
        PollPolicy(initial=30, factor=1, max_interval=30, jitter=0, progress_aware=False),
    ),
    Schedule(
        "expo full jitter",
        PollPolicy(initial=1, factor=2, max_interval=60, jitter=1.0, progress_aware=False),
    ),
)


def band_of(duration: float) -> str:
    return BAND_LABELS[bisect.bisect_right(BAND_EDGES, duration)]


def draw_durations(jobs: int, seed: int) -> list[float]:
    """Log-uniform durations: as many jobs of seconds as of hours, per factor of time."""
    rng = random.Random(f"{seed}/durations")
    low, high = math.log(SHORTEST_JOB), math.log(LONGEST_JOB)
    return [math.exp(rng.uniform(low, high)) for _ in range(jobs)]


# Waiting ----------------------------------------------------------------------------------


async def wait_one(
    service: FakeJobsService,
    client: JobsClient,
    clock: VirtualClock,
    policy: PollPolicy,
    duration: float,
) -> Sample:
    """Script a job of `duration` seconds, wait for it, and measure how late its end was seen."""
    ends_at = clock() + duration
    job_id = service.add_job(duration=duration)
    seen_at, polls = await wait_and_check(service, client, job_id, policy, clock)
    latency = seen_at - ends_at
    if latency < 0:
        raise BenchmarkError(f"job {job_id}: seen ended {-latency:.3f} s before its end")
    return Sample(duration, latency, polls)


async def run_schedules(
    durations: Sequence[float], seed: int
) -> tuple[dict[str, list[Sample]], int, float]:
    """Wait on every duration under every schedule; return the samples by schedule name,
    the HTTP requests the service received, and the wall seconds the waits took."""
    clock = VirtualClock()
    samples: dict[str, list[Sample]] = {}
    async with (
        FakeJobsService(clock=clock) as service,
        JobsClient(service.api_key, base_url=service.base_url) as client,
    ):
        wall_start = time.perf_counter()
        for schedule in SCHEDULES:
            policy = schedule.policy(clock, seed)
            samples[schedule.name] = [
                await wait_one(service, client, clock, policy, duration) for duration in durations
            ]
        wall = time.perf_counter() - wall_start
        requests = service.request_count()
    sent = sum(s.polls for runs in samples.values() for s in runs)
    if sent != requests:
        raise BenchmarkError(f"{sent} polls sent, {requests} requests received")
    return samples, requests, wall


# Reporting --------------------------------------------------------------------------------


def print_header(jobs: int, seed: int) -> None:
    print(
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, "
        f"jobpoll {jobpoll.__version__}; {jobs} jobs, durations log-uniform "
        f"{SHORTEST_JOB:g} s to {LONGEST_JOB / 3600:g} h, seed {seed}"
    )
    for schedule in SCHEDULES:
        print(f"  {schedule.name:<17} {schedule.describe()}")
    print()
    print(
        f"{'schedule':<17}  {'band':<10}  {'jobs':>4}  {'polls/job':>9}  "
        f"{'latency mean':>12}  {'latency p95':>11}  {'p95 latency/duration':>20}"
    )


def print_table(samples: dict[str, list[Sample]]) -> None:
    for name, runs in samples.items():
        by_band = {
            label: [s for s in runs if band_of(s.duration) == label] for label in BAND_LABELS
        }
        by_band[ALL_LABEL] = runs
        for label, band_samples in by_band.items():
            if not band_samples:  # a small --jobs may leave a band empty
                print(f"{name:<17}  {label:<10}  {0:>4}  {'-':>9}  {'-':>12}  {'-':>11}  {'-':>20}")
                continue
            row = Row.of(band_samples)
            print(
                f"{name:<17}  {label:<10}  {row.jobs:>4}  {row.polls_mean:>9.1f}  "
                f"{row.latency_mean:>10.1f} s  {row.latency_p95:>9.1f} s  {row.share_p95:>19.1%}"
            )
        print()


def print_summary(samples: dict[str, list[Sample]], requests: int, wall: float) -> None:
    print(
        f"{requests} HTTP requests to the fake service on 127.0.0.1 in {wall:.1f} s wall "
        f"({wall / requests * 1e6:.0f} µs per request)"
    )
    rows = {name: Row.of(runs) for name, runs in samples.items()}
    default = rows.pop(SCHEDULES[0].name)
    ratios = "; ".join(
        f"{name} {default.polls_mean / row.polls_mean:.2f}x and "
        f"{default.latency_p95 / row.latency_p95:.2f}x"
        for name, row in rows.items()
    )
    print(f"default / baseline, polls per job and p95 latency (all jobs): {ratios}")


# Command line -------------------------------------------------------------------------------


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Polls per job and detection latency of the default PollPolicy, "
        "against fixed and exponential baselines, in virtual time."
    )
    parser.add_argument(
        "--jobs", type=positive_int, default=DEFAULT_JOBS, help="jobs waited for per schedule"
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="seed of the durations and the jitter"
    )
    return parser.parse_args(argv)


@exit_status
def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    print_header(arguments.jobs, arguments.seed)
    durations = draw_durations(arguments.jobs, arguments.seed)
    samples, requests, wall = asyncio.run(run_schedules(durations, arguments.seed))
    print_table(samples)
    print_summary(samples, requests, wall)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Poll schedules compared on simulated jobs: polls per job and detection latency, by shape.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_schedule.py [--jobs 500] [--seed 1] [--plot PATH]
    .venv/bin/python benchmarks/bench_schedule.py --real [--jobs 3] [--seed 1]

The simulation drives each schedule's `Pace` directly in virtual time: no HTTP and no
sleeping. A job of duration `d` and progress shape `f` answers a poll at time `t` (from the
first poll, at 0) with RUNNING and `int(f(t / d))` percent while `t < d`, and with FINISHED
from `t >= d` on, as `jobpoll.testing.FakeJobsService` does. Every schedule waits on the same
jobs: `--jobs` durations per shape, drawn log-uniform from 5 s to 2 h, the same durations for
every shape. Each (schedule, shape, job) draws its jitter from its own generator seeded from
`--seed`, so a run repeats exactly and a job's schedule does not depend on the others.

Detection latency is the time from a job's real end to the poll that saw it ended. For each
shape and over all of them, the program prints per schedule the polls per job (mean), the
latency (mean and 95th percentile, nearest rank), the 95th percentile of latency as a share
of the job's duration, and the ratios to plain exponential backoff measured in the same run:
how many times fewer polls, and p95 latency over plain expo's. Then whether the progress-aware
default meets its target: on every shape that reports progress, at least 3x fewer polls than
plain expo and a lower p95 latency; on the shape that reports none, no more polls and no
higher p95 latency. The exit status is non-zero only when something broke, never for a
target missed.

`--real` runs the same comparison at a small scale for real: `--jobs` jobs per shape of 5 s
to 90 s, all waited for at once with `wait_for_job` over HTTP against a `FakeJobsService` in
this process, on the wall clock (about two minutes). It then replays the same jobs, with the
same jitter draws, in the simulation, and prints both side by side: what the simulation
leaves out (HTTP round trips, timers firing late) shows up as the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import attrs
from _common import Row, Sample, exit_status, positive_int, wait_and_check

import jobpoll
from jobpoll import Job, JobsClient, JobStatus, PollPolicy
from jobpoll.testing import FakeJobsService

DEFAULT_JOBS = 500
DEFAULT_REAL_JOBS = 3
DEFAULT_SEED = 1
SHORTEST_JOB = 5.0
LONGEST_JOB = 2 * 3600.0
SHORTEST_REAL_JOB = 5.0
LONGEST_REAL_JOB = 90.0
#: The progress-aware default must poll at least this many times less than plain expo.
POLLS_TARGET = 3.0
ALL_LABEL = "all shapes"

#: A progress curve as `FakeJobsService.add_job` takes it: share of the time gone -> percent.
Curve = Callable[[float], float]


def _front_loaded(x: float) -> float:
    return 100 * math.sqrt(x)


def _back_loaded(x: float) -> float:
    return 100 * x * x


def _stepwise(x: float) -> float:
    return 10 * math.floor(10 * x)


def _plateau_then_jump(x: float) -> float:
    if x < 0.3:
        return 100 * x
    if x < 0.7:
        return 30
    return 80 + 20 * (x - 0.7) / 0.3


def _stuck_at_99(x: float) -> float:
    return min(99, 99 * x / 0.9)


@dataclass(frozen=True)
class Shape:
    """How a job's reported progress unfolds over its running time."""

    name: str
    curve: Curve | None  # None: the job reports 0 until it ends
    describe: str


SHAPES = (
    Shape("linear", lambda x: 100 * x, "100 x"),
    Shape("front-loaded", _front_loaded, "100 sqrt(x): half done in the first quarter of the time"),
    Shape("back-loaded", _back_loaded, "100 x^2: a quarter done at half the time"),
    Shape("stepwise", _stepwise, "10% more at the end of each tenth of the time"),
    Shape("plateau-then-jump", _plateau_then_jump, "to 30% by 0.3, flat to 0.7, jump to 80%"),
    Shape("stuck at 99%", _stuck_at_99, "99% at 0.9 of the time, stuck there for the last tenth"),
    Shape("no progress", None, "0% until the end"),
)


@dataclass(frozen=True)
class Schedule:
    """A named poll schedule: `template` holds its options, a run injects the rest."""

    name: str
    template: PollPolicy
    describe: str


PLAIN_EXPO = "plain expo"
DEFAULT = "progress-aware"
SCHEDULES = (
    Schedule(
        "fixed 30 s",
        PollPolicy(initial=30, factor=1, max_interval=30, jitter=0, progress_aware=False),
        "every 30 s",
    ),
    Schedule(
        "fixed 5 s",
        PollPolicy(initial=5, factor=1, max_interval=5, jitter=0, progress_aware=False),
        "every 5 s",
    ),
    Schedule(
        PLAIN_EXPO,
        PollPolicy(initial=1, factor=2, max_interval=60, jitter=1, progress_aware=False),
        "1 s doubling up to 60 s, full jitter",
    ),
    Schedule(
        "api-core",
        PollPolicy(initial=1, factor=1.5, max_interval=20, jitter=1, progress_aware=False),
        "google-api-core's default polling: 1 s x1.5 up to 20 s, full jitter",
    ),
    Schedule(
        "blind default",
        PollPolicy(progress_aware=False),
        "PollPolicy(progress_aware=False): wait_for_job's backoff alone, 2 s doubling up to"
        " 30 s, jitter 20%",
    ),
    Schedule(DEFAULT, PollPolicy(), "PollPolicy(): the progress-aware default"),
)


def jitter_source(seed: int, schedule: str, shape: str, index: int) -> Callable[[], float]:
    """The random numbers one schedule draws for one job: the same in the simulation and
    in the real run."""
    return random.Random(f"{seed}/{schedule}/{shape}/{index}").random


def draw_durations(jobs: int, seed: int, shortest: float, longest: float) -> list[float]:
    """Log-uniform durations: as many jobs of seconds as of hours, per factor of time."""
    rng = random.Random(f"{seed}/durations")
    low, high = math.log(shortest), math.log(longest)
    return [math.exp(rng.uniform(low, high)) for _ in range(jobs)]


def progress_at(curve: Curve | None, fraction: float) -> int:
    """The progress a job reports, as the fake service computes it."""
    if curve is None:
        return 0
    return max(0, min(100, int(curve(fraction))))


# Samples and tables ---------------------------------------------------------------------


#: samples[shape name][schedule name]: one Sample per job, in the order of the durations.
Samples = dict[str, dict[str, list[Sample]]]


def with_overall(samples: Samples) -> Samples:
    """The samples by shape, plus every shape's together under `ALL_LABEL`."""
    overall: dict[str, list[Sample]] = {schedule.name: [] for schedule in SCHEDULES}
    for by_schedule in samples.values():
        for name, runs in by_schedule.items():
            overall[name].extend(runs)
    return {**samples, ALL_LABEL: overall}


# The simulation ---------------------------------------------------------------------------

_CREATED_AT = datetime(2026, 1, 1, tzinfo=UTC)
_RUNNING = [
    Job(id="sim", created_at=_CREATED_AT, progress=p, status=JobStatus.RUNNING) for p in range(101)
]


def simulate(policy: PollPolicy, duration: float, curve: Curve | None) -> Sample:
    """Wait on one made-up job with `policy`'s pace, in virtual time, as `wait_for_job`
    would: poll at 0, then after each delay the pace gives, until the job is over."""
    pace = policy.pace()
    now = 0.0
    polls = 0
    while True:
        polls += 1
        if now >= duration:
            return Sample(duration, now - duration, polls)
        now += pace.answered(now, _RUNNING[progress_at(curve, now / duration)])


def run_simulation(durations: Sequence[float], seed: int) -> Samples:
    samples: Samples = {}
    for shape in SHAPES:
        samples[shape.name] = {}
        for schedule in SCHEDULES:
            samples[shape.name][schedule.name] = [
                simulate(
                    attrs.evolve(
                        schedule.template, rng=jitter_source(seed, schedule.name, shape.name, i)
                    ),
                    duration,
                    shape.curve,
                )
                for i, duration in enumerate(durations)
            ]
    return samples


# The real run -----------------------------------------------------------------------------


async def wait_real(
    service: FakeJobsService,
    client: JobsClient,
    policy: PollPolicy,
    duration: float,
    curve: Curve | None,
) -> Sample:
    """Script a job on the fake service (wall clock), wait for it, measure how late its end
    was seen."""
    job_id = service.add_job(duration=duration, progress=curve)
    ends_at = time.monotonic() + duration
    seen_at, polls = await wait_and_check(service, client, job_id, policy, time.monotonic)
    return Sample(duration, max(0.0, seen_at - ends_at), polls)


async def run_real(durations: Sequence[float], seed: int) -> Samples:
    """Every (shape, schedule, duration) waited for at once on the wall clock."""
    connector = aiohttp.TCPConnector(limit=0)
    async with (
        FakeJobsService() as service,
        aiohttp.ClientSession(connector=connector) as session,
        JobsClient(service.api_key, base_url=service.base_url, session=session) as client,
    ):
        keys = []
        waits = []
        for shape in SHAPES:
            for schedule in SCHEDULES:
                for i, duration in enumerate(durations):
                    policy = attrs.evolve(
                        schedule.template, rng=jitter_source(seed, schedule.name, shape.name, i)
                    )
                    keys.append((shape.name, schedule.name))
                    waits.append(wait_real(service, client, policy, duration, shape.curve))
        results = await asyncio.gather(*waits)
    samples: Samples = {shape.name: {s.name: [] for s in SCHEDULES} for shape in SHAPES}
    for (shape_name, schedule_name), sample in zip(keys, results, strict=True):
        samples[shape_name][schedule_name].append(sample)
    return samples


# Reporting --------------------------------------------------------------------------------


def print_header(jobs: int, seed: int, shortest: float, longest: float, real: bool) -> None:
    where = (
        "wall clock, HTTP to FakeJobsService on 127.0.0.1"
        if real
        else "virtual time, Pace driven directly"
    )
    print(
        f"Python {platform.python_version()}, jobpoll {jobpoll.__version__}; {where}; "
        f"{jobs} jobs per shape, durations log-uniform {shortest:g} s to {longest:g} s, "
        f"seed {seed}"
    )
    print("schedules:")
    for schedule in SCHEDULES:
        print(f"  {schedule.name:<19} {schedule.describe}")
    print("shapes (x: share of the job's time gone):")
    for shape in SHAPES:
        print(f"  {shape.name:<19} {shape.describe}")
    print()


COLUMNS = (
    f"{'schedule':<19}  {'polls/job':>9}  {'lat mean':>9}  {'lat p95':>9}  "
    f"{'p95/dur':>8}  {'fewer polls':>11}  {'p95 vs expo':>11}"
)


def print_tables(samples: Samples) -> None:
    for shape_name, by_schedule in with_overall(samples).items():
        print(f"{shape_name}:")
        print(COLUMNS)
        expo = Row.of(by_schedule[PLAIN_EXPO])
        for name, runs in by_schedule.items():
            row = Row.of(runs)
            print(
                f"{name:<19}  {row.polls_mean:>9.1f}  {row.latency_mean:>7.1f} s  "
                f"{row.latency_p95:>7.1f} s  {row.share_p95:>8.1%}  "
                f"{expo.polls_mean / row.polls_mean:>10.2f}x  "
                f"{row.latency_p95 / expo.latency_p95:>10.2f}x"
            )
        print()


def verdicts(samples: Samples) -> list[tuple[str, bool, str]]:
    """Per shape: whether the progress-aware default meets its target against plain expo."""
    results = []
    for shape in SHAPES:
        ours = Row.of(samples[shape.name][DEFAULT])
        expo = Row.of(samples[shape.name][PLAIN_EXPO])
        fewer = expo.polls_mean / ours.polls_mean
        if shape.curve is None:
            met = ours.polls_mean <= expo.polls_mean and ours.latency_p95 <= expo.latency_p95
            target = "no more polls, no higher p95"
        else:
            met = fewer >= POLLS_TARGET and ours.latency_p95 < expo.latency_p95
            target = f">= {POLLS_TARGET:g}x fewer polls, lower p95"
        detail = (
            f"{fewer:.2f}x fewer polls, p95 {ours.latency_p95:.1f} s vs "
            f"{expo.latency_p95:.1f} s ({target})"
        )
        results.append((shape.name, met, detail))
    return results


def print_verdicts(samples: Samples) -> None:
    print(f"{DEFAULT} against {PLAIN_EXPO}:")
    for name, met, detail in verdicts(samples):
        print(f"  {name:<19} {'met' if met else 'NOT MET':<8} {detail}")


def print_comparison(real: Samples, simulated: Samples) -> None:
    """The real run beside its replay in the simulation, per schedule and per shape."""
    print(f"{'':<19}  {'polls/job':>17}  {'latency mean':>19}  {'latency p95':>19}")
    print(
        f"{'schedule':<19}  {'real':>8} {'sim':>8}  {'real':>9} {'sim':>9}  {'real':>9} {'sim':>9}"
    )
    real_all, sim_all = with_overall(real), with_overall(simulated)
    for label in [ALL_LABEL, *(shape.name for shape in SHAPES)]:
        print(f"{label}:")
        for schedule in SCHEDULES:
            a, b = Row.of(real_all[label][schedule.name]), Row.of(sim_all[label][schedule.name])
            print(
                f"  {schedule.name:<17}  {a.polls_mean:>8.1f} {b.polls_mean:>8.1f}  "
                f"{a.latency_mean:>7.2f} s {b.latency_mean:>7.2f} s  "
                f"{a.latency_p95:>7.2f} s {b.latency_p95:>7.2f} s"
            )
    pairs = [
        (r.polls, s.polls)
        for shape in SHAPES
        for schedule in SCHEDULES
        for r, s in zip(
            real[shape.name][schedule.name], simulated[shape.name][schedule.name], strict=True
        )
    ]
    same = sum(r == s for r, s in pairs)
    print(
        f"\n{same} of {len(pairs)} waits sent exactly as many polls for real as in the simulation"
    )


def plot(samples: Samples, path: str) -> None:
    """Polls per job against p95 latency: a point per schedule and shape (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = "o^vsDPX*"
    figure, axes = plt.subplots(figsize=(9, 6), dpi=110)
    for colour, schedule in enumerate(SCHEDULES):
        for index, shape in enumerate(SHAPES):
            row = Row.of(samples[shape.name][schedule.name])
            axes.scatter(
                row.polls_mean,
                row.latency_p95,
                color=f"C{colour}",
                marker=markers[index],
                s=60 if schedule.name == DEFAULT else 40,
                edgecolors="black" if schedule.name == DEFAULT else "none",
                label=schedule.name if index == 0 else None,
            )
    for index, shape in enumerate(SHAPES):
        axes.scatter([], [], color="grey", marker=markers[index], label=shape.name)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("polls per job (mean)")
    axes.set_ylabel("detection latency, 95th percentile (s)")
    jobs = len(next(iter(samples.values()))[DEFAULT])
    axes.set_title(
        f"Poll schedules on {jobs} jobs per shape of 5 s to 2 h (log-uniform): lower left is better"
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, ncol=2, loc="upper right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


# Command line -------------------------------------------------------------------------------


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Polls per job and detection latency of poll schedules on simulated jobs "
        "of several progress shapes; --real for a small run on the wall clock."
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=None,
        help=f"jobs per shape ({DEFAULT_JOBS}; {DEFAULT_REAL_JOBS} with --real)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of all draws")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG plot (needs matplotlib)")
    parser.add_argument(
        "--real", action="store_true", help="wait for real on the fake service (minutes)"
    )
    arguments = parser.parse_args(argv)
    if arguments.real and arguments.plot:
        parser.error("--plot plots the simulation; leave out --real")
    return arguments


@exit_status
def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    seed = arguments.seed
    if arguments.real:
        jobs = arguments.jobs or DEFAULT_REAL_JOBS
        print_header(jobs, seed, SHORTEST_REAL_JOB, LONGEST_REAL_JOB, real=True)
        durations = draw_durations(jobs, seed, SHORTEST_REAL_JOB, LONGEST_REAL_JOB)
        started = time.perf_counter()
        real = asyncio.run(run_real(durations, seed))
        print(f"waited {time.perf_counter() - started:.0f} s wall\n")
        print_comparison(real, run_simulation(durations, seed))
        return 0
    jobs = arguments.jobs or DEFAULT_JOBS
    print_header(jobs, seed, SHORTEST_JOB, LONGEST_JOB, real=False)
    started = time.perf_counter()
    samples = run_simulation(draw_durations(jobs, seed, SHORTEST_JOB, LONGEST_JOB), seed)
    print(f"simulated in {time.perf_counter() - started:.1f} s\n")
    print_tables(samples)
    print_verdicts(samples)
    if arguments.plot:
        plot(samples, arguments.plot)
        print(f"\nplot written to {arguments.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

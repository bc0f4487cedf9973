"""The schedule's trade-off, per family of made-up jobs: polls per job against lateness, over
`PollPolicy(max_lateness=...)`, beside plain backoff over its cap and the oracle.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_schedule.py [--jobs 100] [--seeds 101-105]
        [--tuning-seeds 1-3] [--plot PATH] [--markdown]

The simulation drives `PollPolicy(...).pace()` directly in virtual time, as `wait_for_job`
does: a poll at 0, then one after each delay the pace asks for, until a poll sees the job
ended. Jobs come from `_curves.py`: families of progress curves, durations log-uniform from
20 s to 4 h (day-long jobs: 4 h to 24 h), each job drawn from its seed, family and index.
Lateness is the time from a job's end to the poll that saw it ended.

Per family, on the held-out seeds (101 to 105 unless told), it prints three curves:

- jobpoll: `PollPolicy(max_lateness=L)` for L from 5 s to 300 s;
- plain backoff: 1 s doubling to a cap of 15 s to 120 s, full jitter (`backoff.expo` with
  `full_jitter`): its one knob, the cap;
- the oracle: it knows the curve, so it polls at the start and once at the end (2 polls,
  never late): the bound no schedule can beat.

Then the verdicts, on the held-out seeds:

- the promise: for every knob value, p95 lateness at most the value on every family, and max
  lateness at most 3x it;
- against plain backoff: for every cap, the knob value a user would set for the same
  promptness, backoff's p95 lateness on the tuning seeds (1 to 3): on the held-out seeds,
  its p95 no larger than backoff's, with at least 2x fewer polls on families that report
  progress (3x: the moonshot) and no more on those that do not.

The exit status is 2 when a target is missed (1 when something broke).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from _common import exit_status, percentile, positive_int
from _curves import DAY, FAMILIES, LONGEST, SHORTEST, Family, SimJob, draw_job

import jobpoll
from jobpoll import Job, JobStatus, PollPolicy

DEFAULT_JOBS = 100
TUNING_SEEDS = (1, 2, 3)
HELD_OUT_SEEDS = (101, 102, 103, 104, 105)
#: The knob's values, in seconds: the curve of jobpoll.
KNOB = (5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 23, 26, 30, 35, 40, 45, 50, 60, 70, 80, 90, 100)
KNOB += (110, 120, 150, 180, 240, 300)
#: Plain backoff's caps, in seconds: its curve.
CAPS = (15, 20, 30, 45, 60, 90, 120)
#: Fewer polls than plain backoff, on families that report progress: the target, the moonshot.
POLLS_TARGET = 2.0
MOONSHOT = 3.0
#: Max lateness may be this many times the knob (p95: once).
WORST = 3.0
#: The exit status when a target is missed (1 is kept for a run that broke).
TARGET_MISSED = 2


@dataclass(frozen=True)
class Figures:
    """A schedule's figures on one family: polls per job, p95 and max lateness."""

    polls: float
    p95: float
    worst: float

    @classmethod
    def of(cls, polls: Sequence[int], lateness: Sequence[float]) -> Figures:
        return cls(statistics.fmean(polls), percentile(lateness, 0.95), max(lateness))


ORACLE = Figures(2.0, 0.0, 0.0)
BY_NAME = {family.name: family for family in FAMILIES}

_CREATED_AT = datetime(2026, 1, 1, tzinfo=UTC)
_ANSWERS = {
    (status, p): Job(
        id="sim",
        created_at=_CREATED_AT,
        progress=p,
        status=JobStatus.parse(status),
        raw_status=status,
    )
    for status in ("SCHEDULED", "WAITING", "RUNNING")
    for p in range(101)
}


def simulate(policy: PollPolicy, job: SimJob) -> tuple[int, float]:
    """Wait on one made-up job with `policy`'s pace in virtual time: (polls, lateness)."""
    pace = policy.pace()
    now, polls = 0.0, 0
    while True:
        polls += 1
        answer = job.at(now)
        if answer is None:
            return polls, now - job.duration
        now += pace.answered(now, _ANSWERS[answer])


def jobpoll_policy(knob: float, rng: random.Random) -> PollPolicy:
    return PollPolicy(max_lateness=knob, rng=rng.random)


def plain_backoff(cap: float, rng: random.Random) -> PollPolicy:
    return PollPolicy(
        initial=1, factor=2, max_interval=cap, jitter=1, progress_aware=False, rng=rng.random
    )


SCHEDULES = {"jobpoll": jobpoll_policy, "plain": plain_backoff}


def figures(name: str, seeds: Sequence[int], jobs: int, schedule: str, knob: float) -> Figures:
    """One point of a curve: `schedule` at `knob` on the jobs of family `name` and `seeds`."""
    family = BY_NAME[name]
    polls: list[int] = []
    lateness: list[float] = []
    for seed in seeds:
        for index in range(jobs):
            rng = random.Random(f"{seed}/{schedule}/{knob:g}/{family.name}/{index}")
            count, late = simulate(SCHEDULES[schedule](knob, rng), draw_job(family, seed, index))
            polls.append(count)
            lateness.append(late)
    return Figures.of(polls, lateness)


Curve = dict[float, Figures]


@dataclass(frozen=True)
class Result:
    """One family's curves: backoff's on the tuning seeds, to pick knob values; all of them
    on the held-out seeds."""

    family: Family
    tuning: dict[str, Curve]
    held_out: dict[str, Curve]

    def pick(self, cap: float) -> float:
        """The knob value a user who wants backoff's promptness at `cap` sets: backoff's p95
        lateness on the tuning seeds (to a tenth of a second)."""
        return pick(self.tuning["plain"][cap])

    def fewer(self, cap: float) -> float:
        """How many times fewer polls than backoff at `cap` the knob value picked for it
        takes on the held-out seeds (0 when its p95 there is larger than backoff's)."""
        ours, plain = self.held_out["jobpoll"][self.pick(cap)], self.held_out["plain"][cap]
        return plain.polls / ours.polls if ours.p95 <= plain.p95 else 0.0

    def met(self, cap: float) -> bool:
        return self.fewer(cap) >= (POLLS_TARGET if self.family.draw is not None else 1.0)

    def broken(self) -> list[float]:
        """The knob values (the curve's and those picked) whose promise the held-out seeds
        break."""
        ours = self.held_out["jobpoll"]
        return [k for k in sorted(ours) if ours[k].p95 > k or ours[k].worst > WORST * k]


def pick(plain: Figures) -> float:
    return max(KNOB[0], round(plain.p95, 1))


Task = tuple[Family, str, str, float]  # family, "tuning" or "held_out", schedule, knob


def simulate_all(
    pool: ProcessPoolExecutor, tasks: Sequence[Task], seeds: dict[str, Sequence[int]], jobs: int
) -> dict[tuple[str, str], dict[str, Curve]]:
    """Each task's figures, by (family, kind), then schedule, then knob."""
    done = pool.map(
        figures,
        [family.name for family, _, _, _ in tasks],
        [seeds[kind] for _, kind, _, _ in tasks],
        [jobs] * len(tasks),
        [schedule for _, _, schedule, _ in tasks],
        [knob for _, _, _, knob in tasks],
    )
    curves: dict[tuple[str, str], dict[str, Curve]] = {}
    for (family, kind, schedule, knob), point in zip(tasks, done, strict=True):
        curves.setdefault((family.name, kind), {}).setdefault(schedule, {})[knob] = point
    return curves


def run(tuning: Sequence[int], held_out: Sequence[int], jobs: int, workers: int) -> list[Result]:
    """Backoff on the tuning seeds, to pick the knob values; then on the held-out seeds,
    every curve and the knob values picked."""
    seeds = {"tuning": tuning, "held_out": held_out}
    with ProcessPoolExecutor(workers) as pool:
        tasks: list[Task] = [(f, "tuning", "plain", cap) for f in FAMILIES for cap in CAPS]
        picked = simulate_all(pool, tasks, seeds, jobs)
        tasks = []
        for family in FAMILIES:
            plain = picked[family.name, "tuning"]["plain"]
            knobs = sorted({*KNOB, *(pick(plain[cap]) for cap in CAPS)})
            tasks += [(family, "held_out", "jobpoll", knob) for knob in knobs]
            tasks += [(family, "held_out", "plain", cap) for cap in CAPS]
        curves = simulate_all(pool, tasks, seeds, jobs)
    return [
        Result(family, picked[family.name, "tuning"], curves[family.name, "held_out"])
        for family in FAMILIES
    ]


# Reporting ----------------------------------------------------------------------------------

#: The knob values and caps the printed curves show (all are simulated and checked).
SHOWN = (5, 10, 20, 45, 60, 120, 300)
SHOWN_CAPS = (15, 30, 60, 120)
assert set(SHOWN) <= set(KNOB)
assert set(SHOWN_CAPS) <= set(CAPS)


def print_header(tuning: Sequence[int], held_out: Sequence[int], jobs: int) -> None:
    mixed = "" if set(held_out).isdisjoint(tuning) else " (NOT disjoint from the tuning seeds)"
    print(
        f"Python {platform.python_version()}, jobpoll {jobpoll.__version__}; virtual time; "
        f"{jobs} jobs per family and seed, durations log-uniform {SHORTEST:g} s to "
        f"{LONGEST:g} s (day-long: to {DAY:g} s); knob values picked on seeds "
        f"{', '.join(map(str, tuning))}, figures of seeds {', '.join(map(str, held_out))}"
        f"{mixed}"
    )
    print(f"jobpoll: PollPolicy(max_lateness=L), L = {', '.join(f'{k:g}' for k in KNOB)} s")
    print(f"plain:   1 s doubling to a cap of {', '.join(map(str, CAPS))} s, full jitter")
    print("oracle:  a poll at the start, one at the end: 2 polls, never late")
    print("families (x: share of the running time gone):")
    for family in FAMILIES:
        print(f"  {family.name:<17} {family.describe}")
    print()


def print_curves(results: Sequence[Result]) -> None:
    print("curves, held out: polls per job / p95 / max lateness (s)")
    for r in results:
        ours = r.held_out["jobpoll"]
        plain = r.held_out["plain"]
        print(f"{r.family.name}")
        print(
            "  jobpoll L  "
            + "  ".join(
                f"{k:>5g}: {ours[k].polls:6.1f} {ours[k].p95:5.1f} {ours[k].worst:5.0f}"
                for k in SHOWN
            )
        )
        print(
            "  plain cap  "
            + "  ".join(
                f"{c:>5g}: {plain[c].polls:6.1f} {plain[c].p95:5.1f} {plain[c].worst:5.0f}"
                for c in SHOWN_CAPS
            )
        )
    print()


def print_verdicts(results: Sequence[Result]) -> bool:
    print(
        f"promise (held out): p95 lateness <= L and max lateness <= {WORST:g} L, for every L "
        f"from {KNOB[0]:g} s to {KNOB[-1]:g} s and every L picked below"
    )
    for r in results:
        ours = r.held_out["jobpoll"]
        p95 = max(ours[k].p95 / k for k in ours)
        worst = max(ours[k].worst / k for k in ours)
        broken = r.broken()
        verdict = "met" if not broken else "BROKEN at " + ", ".join(f"{k:g}" for k in broken)
        print(f"  {r.family.name:<17} p95 up to {p95:.2f} L, max up to {worst:.2f} L: {verdict}")
    print(
        f"\nagainst plain backoff (held out; L: backoff's p95 on the tuning seeds): fewer polls"
        f" at a p95 no larger, target >= {POLLS_TARGET:g}x on families with progress (moonshot "
        f"{MOONSHOT:g}x), >= 1x without"
    )
    print(f"  {'family':<17} " + " ".join(f"{'cap ' + str(c) + ' s':>14}" for c in CAPS))
    for r in results:
        cells = []
        for cap in CAPS:
            mark = "" if r.met(cap) else "!"
            cells.append(f"{r.fewer(cap):5.2f}x@{r.pick(cap):<5g}{mark:1}".rjust(14))
        print(f"  {r.family.name:<17} " + " ".join(cells))
    met = all(r.met(cap) for r in results for cap in CAPS)
    kept = all(not r.broken() for r in results)
    moonshot = all(
        r.fewer(cap) >= MOONSHOT for r in results if r.family.draw is not None for cap in CAPS
    )
    print(
        f"\npromise kept on every family: {'yes' if kept else 'NO'}; against backoff: "
        f"{'met' if met else 'NOT MET'} ('!' marks a miss; 0.00x: p95 larger than backoff's); "
        f"moonshot: {'met' if moonshot else 'not met'}"
    )
    return met and kept


def markdown(results: Sequence[Result]) -> str:
    """The tables docs/schedule.md quotes: jobpoll's curve and promise, then against backoff."""
    keys = (5, 10, 45, 120, 300)
    shown = " / ".join(f"{k:g}" for k in keys)
    lines = [
        f"| family | polls per job, L = {shown} s | p95 late (s) | max late (s) | "
        "worst p95 / L, max / L |",
        "|---|--:|--:|--:|--:|",
    ]
    for r in results:
        ours = r.held_out["jobpoll"]
        p95 = max(ours[k].p95 / k for k in ours)
        worst = max(ours[k].worst / k for k in ours)
        lines.append(
            f"| {r.family.name} | {' / '.join(f'{ours[k].polls:.1f}' for k in keys)} | "
            f"{' / '.join(f'{ours[k].p95:.0f}' for k in keys)} | "
            f"{' / '.join(f'{ours[k].worst:.0f}' for k in keys)} | {p95:.2f} / {worst:.2f} |"
        )
    lines += [
        "",
        "| family | " + " | ".join(f"backoff cap {c} s" for c in SHOWN_CAPS) + " |",
        "|---|" + "--:|" * len(SHOWN_CAPS),
    ]
    for r in results:
        lines.append(f"| {r.family.name} | " + " | ".join(_cell(r, c) for c in SHOWN_CAPS) + " |")
    return "\n".join(lines)


def _cell(r: Result, cap: float) -> str:
    """Fewer polls than backoff at `cap`, with the knob value and both p95s (ours / its)."""
    knob, fewer = r.pick(cap), r.fewer(cap)
    ours, plain = r.held_out["jobpoll"][knob], r.held_out["plain"][cap]
    ratio = f"**{fewer:.2f}x**" if fewer >= MOONSHOT else f"{fewer:.2f}x"
    missed = "" if r.met(cap) else " (miss)"
    return f"{ratio}{missed} (L {knob:g}: {ours.p95:.0f} / {plain.p95:.0f} s)"


def plot(results: Sequence[Result], held_out: Sequence[int], jobs: int, path: str) -> bool:
    """Per family: polls per job against p95 (solid) and max (dotted) lateness. False when
    matplotlib is not installed (it is only in the `bench` extra)."""
    try:
        import matplotlib  # optional: only --plot needs it
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = 6
    rows = math.ceil(len(results) / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(20, 3.6 * rows), dpi=90, sharey=True)
    for axes, r in zip(grid.flat, results, strict=False):
        for schedule, keys, color, label in (
            ("jobpoll", KNOB, "C0", "jobpoll, max_lateness 5-300 s"),
            ("plain", CAPS, "C3", "plain backoff, cap 15-120 s"),
        ):
            curve = [r.held_out[schedule][k] for k in keys]
            polls = [f.polls for f in curve]
            axes.plot(polls, [f.p95 for f in curve], color=color, marker=".", label=f"{label}: p95")
            axes.plot(polls, [f.worst for f in curve], color=color, ls=":", label="max")
        axes.scatter(ORACLE.polls, ORACLE.p95, color="C2", marker="*", s=90, label="oracle")
        axes.set_xscale("log")
        axes.set_yscale("symlog", linthresh=10)
        axes.set_title(r.family.name, fontsize=10)
        axes.grid(True, which="both", alpha=0.3)
        axes.set_xlabel("polls per job (mean)")
    for axes in grid[:, 0]:
        axes.set_ylabel("lateness (s)")
    for axes in list(grid.flat)[len(results) :]:
        axes.axis("off")
    grid.flat[0].legend(fontsize=6, loc="upper right")
    figure.suptitle(
        f"Polls per job against p95 (solid) and max (dotted) lateness, {jobs} jobs x seeds "
        f"{', '.join(map(str, held_out))} per family: lower left is better"
    )
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return True


# Command line -------------------------------------------------------------------------------


def seed_list(text: str) -> list[int]:
    """`101-105` or `1,2,3`."""
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds.extend(range(int(low), int(high or low) + 1))
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds")
    return seeds


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Polls per job against lateness over PollPolicy(max_lateness=...), beside "
        "plain backoff over its cap and the oracle, on families of made-up jobs."
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=DEFAULT_JOBS,
        help=f"jobs per family and seed ({DEFAULT_JOBS})",
    )
    parser.add_argument(
        "--seeds",
        type=seed_list,
        default=list(HELD_OUT_SEEDS),
        help="the seeds the figures come from (101-105: held out)",
    )
    parser.add_argument(
        "--tuning-seeds",
        type=seed_list,
        default=list(TUNING_SEEDS),
        help="the seeds the knob values are picked on (1-3)",
    )
    parser.add_argument(
        "--workers", type=positive_int, default=os.cpu_count() or 1, help="processes"
    )
    parser.add_argument("--plot", metavar="PATH", help="write a PNG plot (needs matplotlib)")
    parser.add_argument("--markdown", action="store_true", help="also print Markdown tables")
    return parser.parse_args(argv)


@exit_status
def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    print_header(arguments.tuning_seeds, arguments.seeds, arguments.jobs)
    started = time.perf_counter()
    results = run(arguments.tuning_seeds, arguments.seeds, arguments.jobs, arguments.workers)
    print(f"simulated in {time.perf_counter() - started:.1f} s\n")
    print_curves(results)
    met = print_verdicts(results)
    if arguments.markdown:
        print()
        print(markdown(results))
    if arguments.plot:
        if plot(results, arguments.seeds, arguments.jobs, arguments.plot):
            print(f"\nplot written to {arguments.plot}")
        else:
            print("\nno plot: matplotlib is not installed (pip install -e '.[bench]')")
    return 0 if met else TARGET_MISSED


if __name__ == "__main__":
    sys.exit(main())

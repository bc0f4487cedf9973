"""Made-up jobs for the schedule benchmark: families of progress curves, drawn from a seed.

A job is what the service would answer at each moment of its life: a status (SCHEDULED while
queued, then RUNNING) and a whole percent of progress, rounded down as the service reports it,
until its end, when it is FINISHED. Every draw comes from `random.Random(f"{seed}/{family}/
{index}")`, so a job depends only on its seed, family and index, and a family can be added
without changing the jobs of the others.

Durations (queue included) are log-uniform from `SHORTEST` to `LONGEST`: as many jobs of
seconds as of hours, per factor of time; day-long jobs from `LONGEST` to `DAY`.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

SHORTEST = 20.0
LONGEST = 4 * 3600.0
DAY = 24 * 3600.0


@dataclass(frozen=True)
class SimJob:
    """One made-up job: it runs for `duration` seconds from the first poll, queued (status
    `queued_as`, progress 0) for the first `queued` of them, then RUNNING with progress
    `curve(x)` at the share `x` of its running time gone, until FINISHED at `duration`."""

    duration: float
    queued: float
    queued_as: str
    curve: Callable[[float], float] | None  # None: 0 until the end

    def at(self, t: float) -> tuple[str, int] | None:
        """(status, progress) answered at `t` seconds after the first poll; None once ended."""
        if t >= self.duration:
            return None
        if t < self.queued:
            return self.queued_as, 0
        if self.curve is None:
            return "RUNNING", 0
        x = (t - self.queued) / (self.duration - self.queued)
        return "RUNNING", max(0, min(100, int(self.curve(x) + 1e-9)))


def _piecewise(times: list[float], values: list[float]) -> Callable[[float], float]:
    """Linear interpolation through (times[i], values[i]), times increasing from 0 to 1."""

    def curve(x: float) -> float:
        i = max(1, min(len(times) - 1, bisect.bisect_right(times, x)))
        t0, t1, v0, v1 = times[i - 1], times[i], values[i - 1], values[i]
        return v0 + (v1 - v0) * (x - t0) / (t1 - t0) if t1 > t0 else v1

    return curve


def _rates(rng: random.Random, changes: int, low: float, high: float) -> Callable[[float], float]:
    """Progress at a rate that changes at `changes` random moments by a factor from `low` to
    `high` (log-uniform), scaled so that it reaches 100 at the end."""
    moments = sorted(rng.random() for _ in range(changes))
    times = [0.0, *moments, 1.0]
    rate, values = 1.0, [0.0]
    for i in range(1, len(times)):
        values.append(values[-1] + rate * (times[i] - times[i - 1]))
        rate *= math.exp(rng.uniform(math.log(low), math.log(high)))
    scale = 100 / values[-1]
    return _piecewise(times, [v * scale for v in values])


def _steady(_rng: random.Random) -> Callable[[float], float]:
    return lambda x: 100 * x


def _s_curve(rng: random.Random) -> Callable[[float], float]:
    a = rng.uniform(1.5, 3.0)
    return lambda x: 100 * x**a / (x**a + (1 - x) ** a) if x < 1 else 100.0


def _accelerating(rng: random.Random) -> Callable[[float], float]:
    a = rng.uniform(1.5, 3.0)
    return lambda x: 100 * x**a


def _decelerating(rng: random.Random) -> Callable[[float], float]:
    a = rng.uniform(1.5, 3.0)
    return lambda x: 100 * (1 - (1 - x) ** a)


def _changing(rng: random.Random) -> Callable[[float], float]:
    return _rates(rng, rng.randint(1, 4), 1 / 3, 3.0)


def _steps(rng: random.Random) -> Callable[[float], float]:
    step = rng.choice((10, 20, 25))
    return lambda x: step * math.floor(100 * x / step + 1e-9)


def _pauses(rng: random.Random) -> Callable[[float], float]:
    # 1 to 3 pauses, together 10% to 40% of the running time, at random points of progress.
    count = rng.randint(1, 3)
    paused = rng.uniform(0.1, 0.4)
    lengths = [rng.random() for _ in range(count)]
    lengths = [paused * w / sum(lengths) for w in lengths]
    at = sorted(rng.uniform(5, 95) for _ in range(count))
    times, values, t, p = [0.0], [0.0], 0.0, 0.0
    moving = 1 - paused
    for where, length in zip(at, lengths, strict=True):
        t += (where - p) / 100 * moving
        times.append(t)
        values.append(where)
        t += length
        times.append(t)
        values.append(where)
        p = where
    times.append(1.0)
    values.append(100.0)
    return _piecewise(times, values)


def _abrupt(rng: random.Random) -> Callable[[float], float]:
    # Steady progress that the job leaves behind: it ends when it reports `last` percent.
    last = rng.uniform(90, 100)
    return lambda x: last * x


def _speeds_up(_rng: random.Random) -> Callable[[float], float]:
    # 62.5% a unit of time for four fifths (to 50%), then 4x as fast: 250% a unit.
    return lambda x: 62.5 * x if x < 0.8 else 50 + 250 * (x - 0.8)


def _chunks(rng: random.Random) -> Callable[[float], float]:
    # 3 to 10 chunks of random size at random moments; the last one is the end itself.
    count = rng.randint(3, 10)
    moments = sorted(rng.random() for _ in range(count - 1))
    sizes = [rng.random() + 0.1 for _ in range(count)]
    levels = [0.0]
    for size in sizes[:-1]:
        levels.append(levels[-1] + 100 * size / sum(sizes))
    return lambda x: levels[bisect.bisect_right(moments, x)]


def _restarts(rng: random.Random) -> Callable[[float], float]:
    # Steady to 20% to 80%, back to 0, once or twice; the last run goes to 100.
    runs = [rng.uniform(20, 80) for _ in range(rng.randint(1, 2))] + [100.0]
    total = sum(runs)
    starts = [sum(runs[:i]) / total for i in range(len(runs) + 1)]

    def curve(x: float) -> float:
        i = min(len(runs) - 1, bisect.bisect_right(starts, x) - 1)
        return runs[i] * (x - starts[i]) / (starts[i + 1] - starts[i])

    return curve


def _long_tail(rng: random.Random) -> Callable[[float], float]:
    at = rng.uniform(0.3, 0.7)  # 99% reached at this share of the time, kept until the end
    return lambda x: min(99.0, 99 * x / at)


def _noisy(rng: random.Random) -> Callable[[float], float]:
    return _rates(rng, rng.randint(20, 40), 0.5, 2.0)


def _thirds(_rng: random.Random) -> Callable[[float], float]:
    return lambda x: 33 * math.floor(3 * x + 1e-9)


def _fast_then_crawl(rng: random.Random) -> Callable[[float], float]:
    level, at = rng.uniform(60, 90), rng.uniform(0.05, 0.2)
    return _piecewise([0.0, at, 1.0], [0.0, level, 100.0])


@dataclass(frozen=True)
class Family:
    """A family of progress curves, and how one is drawn."""

    name: str
    describe: str
    draw: Callable[[random.Random], Callable[[float], float]] | None  # None: no progress
    queued: bool = False
    longest: float = LONGEST
    shortest: float = SHORTEST


FAMILIES = (
    Family("steady", "100 x", _steady),
    Family(
        "slow-fast-slow",
        "slow start, fast middle, slow end: 100 x^a / (x^a + (1-x)^a), a 1.5 to 3",
        _s_curve,
    ),
    Family("accelerating", "100 x^a, a 1.5 to 3", _accelerating),
    Family("decelerating", "100 (1 - (1-x)^a), a 1.5 to 3", _decelerating),
    Family(
        "changing rate",
        "the rate changes 1 to 4 times, at random moments, by 1/3x to 3x each",
        _changing,
    ),
    Family(
        "queued",
        "SCHEDULED or WAITING at 0% for 10% to 60% of the time, then steady",
        _steady,
        queued=True,
    ),
    Family("coarse steps", "steps of 10, 20 or 25%, each reached at its share of the time", _steps),
    Family("pauses", "steady with 1 to 3 pauses, together 10% to 40% of the time", _pauses),
    Family("abrupt end", "steady, but ends while reporting 90% to 99%", _abrupt),
    Family("no progress", "0% until the end", None),
    Family("speeds up", "62.5 x, 4x as fast in its last fifth (50% to 100%)", _speeds_up),
    Family(
        "random chunks", "3 to 10 jumps of random size at random moments; the last ends it", _chunks
    ),
    Family("restarts", "steady to 20% to 80%, back to 0, once or twice, then to 100", _restarts),
    Family(
        "long tail", "steady to 99% at 30% to 70% of the time, then 99% until the end", _long_tail
    ),
    Family(
        "day-long",
        "the rate changes 1 to 4 times by 1/3x to 3x; 4 h to 24 h",
        _changing,
        longest=DAY,
        shortest=LONGEST,
    ),
    Family("noisy rate", "the rate changes 20 to 40 times, by 1/2x to 2x each", _noisy),
    Family("steps of a third", "0, 33, 66%, then the end", _thirds),
    Family(
        "fast then crawl",
        "60% to 90% in the first 5% to 20% of the time, then a crawl",
        _fast_then_crawl,
    ),
)


def draw_job(family: Family, seed: int, index: int) -> SimJob:
    """Job `index` of `family` for `seed`."""
    rng = random.Random(f"{seed}/{family.name}/{index}")
    duration = math.exp(rng.uniform(math.log(family.shortest), math.log(family.longest)))
    curve = family.draw(rng) if family.draw is not None else None
    queued, queued_as = 0.0, "SCHEDULED"
    if family.queued:
        queued = duration * rng.uniform(0.1, 0.6)
        queued_as = rng.choice(("SCHEDULED", "WAITING"))
    return SimJob(duration, queued, queued_as, curve)

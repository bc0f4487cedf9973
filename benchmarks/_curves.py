"""Made-up jobs for the schedule benchmark: families of progress curves, drawn from a seed.

A job is what the service would answer at each moment of its life: a status (SCHEDULED while
queued, then RUNNING) and a whole percent of progress, rounded down as the service reports it,
until its end, when it is FINISHED. Every draw comes from `random.Random(f"{seed}/{family}/
{index}")`, so a job depends only on its seed, family and index, and a family can be added
without changing the jobs of the others.

Durations (queue included) are log-uniform from `SHORTEST` to `LONGEST`: as many jobs of
seconds as of hours, per factor of time.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

SHORTEST = 10.0
LONGEST = 4 * 3600.0


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


@dataclass(frozen=True)
class Family:
    """A family of progress curves, and how one is drawn."""

    name: str
    describe: str
    draw: Callable[[random.Random], Callable[[float], float]] | None  # None: no progress
    queued: bool = False


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
)


def draw_job(family: Family, seed: int, index: int) -> SimJob:
    """Job `index` of `family` for `seed`."""
    rng = random.Random(f"{seed}/{family.name}/{index}")
    duration = math.exp(rng.uniform(math.log(SHORTEST), math.log(LONGEST)))
    curve = family.draw(rng) if family.draw is not None else None
    queued, queued_as = 0.0, "SCHEDULED"
    if family.queued:
        queued = duration * rng.uniform(0.1, 0.6)
        queued_as = rng.choice(("SCHEDULED", "WAITING"))
    return SimJob(duration, queued, queued_as, curve)

"""How the fake service's jobs unfold (`JobScript`, made by `add_job`), and a scenario's rules
as data: what the ids matching a pattern become (`JobRule`), which requests a fault answers
(`FaultRule`), and the `Scenario` holding them and the options."""

from __future__ import annotations

import fnmatch
import math
import zlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

import attrs

from jobpoll._models import MAX_PROGRESS, MIN_PROGRESS, Job, JobStatus, job_to_wire
from jobpoll.testing._faults import Fault, RateLimit

#: A progress curve: the fraction of the running time gone (0..1) to percent done.
ProgressCurve = Callable[[float], float]


def linear(fraction: float) -> float:
    """Progress that grows evenly with time."""
    return 100 * fraction


@attrs.define
class JobScript:
    """How one job unfolds in time, from `add_job`'s arguments."""

    job_id: str
    started: float
    created_at: datetime
    duration: float
    final_status: str
    queued: float
    progress: ProgressCurve | None
    running_status: str
    progress_as_string: bool
    user: str
    pinned: tuple[str, int] | None = None

    def state(self, now: float) -> tuple[str, int]:
        """The raw status and the progress at `now`, on the service's clock."""
        if self.pinned is not None:
            return self.pinned
        elapsed = now - self.started
        if elapsed >= self.duration:
            if JobStatus.parse(self.final_status) is JobStatus.FINISHED:
                return self.final_status, MAX_PROGRESS
            return self.final_status, self._progress_at(1.0)
        if elapsed < self.queued:
            return JobStatus.SCHEDULED.value, MIN_PROGRESS
        return self.running_status, self._progress_at(
            (elapsed - self.queued) / (self.duration - self.queued)
        )

    def _progress_at(self, fraction: float) -> int:
        if self.progress is None:
            return MIN_PROGRESS
        return max(MIN_PROGRESS, min(MAX_PROGRESS, int(self.progress(fraction))))

    def body(self, now: float) -> dict[str, Any]:
        """The job's JSON at `now`, as the service sends it."""
        raw_status, progress = self.state(now)
        job = Job(
            id=self.job_id,
            created_at=self.created_at,
            user=self.user,
            progress=progress,
            status=JobStatus.parse(raw_status),
            raw_status=raw_status,
        )
        wire = job_to_wire(job)
        if self.progress_as_string:
            wire["progress"] = str(progress)  # as the service's own reference example does
        return wire


#: The statuses a scripted job may end in.
OUTCOMES = tuple(
    status.value for status in JobStatus if status.is_terminal and status is not JobStatus.UNKNOWN
)


def _steps(step: int) -> ProgressCurve:
    def curve(fraction: float) -> float:
        return step * math.floor(100 * fraction / step + 1e-9)

    return curve


#: The progress shapes by name; `steps-N` (N from 1 to 100) moves in steps of N percent.
SHAPES: dict[str, ProgressCurve | None] = {
    "linear": linear,
    "ease-in": lambda fraction: 100 * fraction * fraction,
    "ease-out": lambda fraction: 100 * (1 - (1 - fraction) ** 2),
    "none": None,
}


def shape(name: Any) -> ProgressCurve | None:
    """The progress curve named `name` (None: no progress until the end); a `ValueError`
    for no such shape says which there are."""
    if not isinstance(name, str):
        raise TypeError(f"must be a name, got {name!r}")
    if name in SHAPES:
        return SHAPES[name]
    step = name.removeprefix("steps-")
    if step != name and step.isascii() and step.isdigit() and 1 <= int(step) <= 100:
        return _steps(int(step))
    raise ValueError(f"must be one of {', '.join(SHAPES)} or steps-N (N from 1 to 100)")


def _scaled(curve: ProgressCurve | None, reach: int) -> ProgressCurve | None:
    if curve is None or reach == 100:
        return curve

    def scaled(fraction: float) -> float:
        return reach * curve(fraction) / 100

    return scaled


@attrs.frozen
class JobRule:
    """What the ids matching `match` become at their first request."""

    match: str = "*"
    #: Seconds from the first request to the end: the least and the most (equal: fixed).
    duration: tuple[float, float] = (10.0, 10.0)
    queued: float = 0.0
    #: The progress curve, from a name in `SHAPES` or `steps-N`.
    shape: ProgressCurve | None = linear
    outcome: str = JobStatus.FINISHED.value
    #: The progress reached at the end; 100 for a job that finishes.
    reach: int = 100
    share: float = 1.0
    progress_as_string: bool = False
    missing: bool = False

    def applies_to(self, job_id: str, seed: int) -> bool:
        if not fnmatch.fnmatchcase(job_id, self.match):
            return False
        return self.share >= 1.0 or _fraction(seed, "share", self.match, job_id) < self.share

    def script(self, job_id: str, seed: int) -> dict[str, Any]:
        """The arguments of `FakeJobsService.add_job` for `job_id`."""
        low, high = self.duration
        duration = low
        if high > low:
            duration += (high - low) * _fraction(seed, "duration", self.match, job_id)
        reach = 100 if self.outcome == JobStatus.FINISHED.value else self.reach
        return {
            "duration": duration,
            "queued": min(self.queued, duration),
            "progress": _scaled(self.shape, reach),
            "final_status": self.outcome,
            "progress_as_string": self.progress_as_string,
        }


def _fraction(seed: int, *parts: str) -> float:
    """A number in [0, 1) that depends only on its arguments: the same ids get the same
    durations and outcomes on every run with the same seed."""
    key = "\0".join((str(seed), *parts)).encode("utf-8", "surrogatepass")
    return zlib.crc32(key) / 2**32


@attrs.frozen
class FaultRule:
    """Requests answered with `fault` instead of the job: a `share` of them, `times` of them,
    or all of them from `at` for `seconds` (a burst), for ids matching `match`."""

    fault: Fault
    match: str = "*"
    share: float | None = None
    at: float = 0.0
    seconds: float | None = None
    times: int | None = None

    def active(self, elapsed: float) -> bool:
        """Whether the rule answers requests `elapsed` seconds after the service started."""
        return self.at <= elapsed and (self.seconds is None or elapsed < self.at + self.seconds)


@attrs.frozen
class Scenario:
    """Everything a fake service serves: an id no job rule covers is a 404, or with
    `auto_create_duration` a job that finishes that many seconds after its first request.
    `rate_limit`: the gateway's token bucket in front of it (each service serves a fresh copy
    of it, full)."""

    jobs: tuple[JobRule, ...] = ()
    faults: tuple[FaultRule, ...] = ()
    port: int = 0
    api_key: str | None = None
    latency: float = 0.0
    seed: int = 0
    auto_create_duration: float | None = None
    rate_limit: RateLimit | None = None

    def rule_for(self, job_id: str) -> JobRule | None:
        return next((rule for rule in self.jobs if rule.applies_to(job_id, self.seed)), None)

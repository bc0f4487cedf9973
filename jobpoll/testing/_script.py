"""How one job of the fake service unfolds in time: a `JobScript`, made by `add_job`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import attrs

from jobpoll._models import MAX_PROGRESS, MIN_PROGRESS, Job, JobStatus, job_to_wire

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

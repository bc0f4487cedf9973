"""What a job looks like to jobpoll's users: `JobStatus` and the `Job` snapshot.

The models know nothing of JSON; the wire format lives in `_wire`.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Self

import attrs

__all__ = ["Job", "JobStatus"]


class JobStatus(enum.StrEnum):
    """The execution status of a job, as the service documents it.

    `UNKNOWN` is both a status the service documents and where any status string jobpoll has
    never heard of lands (the string itself is kept in `Job.raw_status`), so that a status the
    service adds tomorrow never crashes a poller today.
    """

    ARCHIVED = "ARCHIVED"
    UNKNOWN = "UNKNOWN"
    CREATED = "CREATED"
    PERSISTED = "PERSISTED"
    SCHEDULED = "SCHEDULED"
    WAITING = "WAITING"
    COULDNT_START = "COULDNT_START"
    RUNNING = "RUNNING"
    CANCELED = "CANCELED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    DIED = "DIED"

    @classmethod
    def parse(cls, raw: str) -> JobStatus:
        """The status a server's string names (case-insensitively), or `UNKNOWN`."""
        return _BY_NAME.get(raw) or _BY_NAME.get(raw.upper(), cls.UNKNOWN)

    @property
    def is_terminal(self) -> bool:
        """True when the job will not change any more (FINISHED, a failure, or ARCHIVED)."""
        return self in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        """True only for FINISHED."""
        return self is JobStatus.FINISHED

    @property
    def failed(self) -> bool:
        """True for FAILED, DIED, COULDNT_START and CANCELED."""
        return self in FAILED_STATUSES


_BY_NAME: dict[str, JobStatus] = {status.value: status for status in JobStatus}

#: The statuses after which a job does not change. ARCHIVED is over, its outcome not reported.
TERMINAL_STATUSES = frozenset(
    {
        JobStatus.FINISHED,
        JobStatus.FAILED,
        JobStatus.DIED,
        JobStatus.COULDNT_START,
        JobStatus.CANCELED,
        JobStatus.ARCHIVED,
    }
)
#: The terminal statuses that mean the job did not do its work.
FAILED_STATUSES = frozenset(
    {JobStatus.FAILED, JobStatus.DIED, JobStatus.COULDNT_START, JobStatus.CANCELED}
)

MIN_PROGRESS = 0
MAX_PROGRESS = 100


def _raw_status_default(job: Job) -> str:
    return job.status.value


def _check_progress(_job: Job, _attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not MIN_PROGRESS <= value <= MAX_PROGRESS:
        raise ValueError(f"progress must be an int from 0 to 100, got {value!r}")


@attrs.frozen(kw_only=True)
class Job:
    """One snapshot of a job's state, as the server reported it.

    Attributes:
        id: the job's id.
        created_at: when the job was created (timezone-aware).
        user: the (human) user or API key that owns the job, when reported.
        progress: percent done, 0 to 100 (0 when the server does not report it: the service
            documents progress only for running jobs).
        status: the status, `JobStatus.UNKNOWN` for one jobpoll does not know.
        raw_status: the status string exactly as the server sent it.
    """

    id: str
    created_at: datetime
    user: str | None = None
    progress: int = attrs.field(default=0, validator=_check_progress)
    status: JobStatus
    raw_status: str = attrs.field(default=attrs.Factory(_raw_status_default, takes_self=True))

    @property
    def is_terminal(self) -> bool:
        """True when the job will not change any more."""
        return self.status.is_terminal

    def to_dict(self) -> dict[str, Any]:
        """The job as the service writes it: `id`, `createdAt` (ISO 8601, `Z`), `user`,
        `progress` and `status` (the string the server sent), ready for `json.dumps`."""
        from jobpoll._wire import record_to_wire  # the wire format imports the models

        return record_to_wire(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """A job from what `to_dict` wrote (or a body of the service, parsed), by the same
        rules as the client's: `"progress": "77"` is 77, an unknown status is `UNKNOWN`.

        Raises:
            ValueError: the data is no valid job; the message names the field by its wire
                name (e.g. `createdAt`).
        """
        from jobpoll._wire import record_from_wire

        return record_from_wire(data, cls)

    @property
    def succeeded(self) -> bool:
        """True when the job FINISHED."""
        return self.status is JobStatus.FINISHED

    @property
    def failed(self) -> bool:
        """True when the job FAILED, DIED, COULDNT_START or was CANCELED.

        ARCHIVED is terminal but neither succeeded nor failed: the service no longer says.
        """
        return self.status in FAILED_STATUSES

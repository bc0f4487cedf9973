"""What a job looks like to jobpoll's users: `JobStatus`, the `Job` snapshot, and the
`JobResult` of a fan-out. Where the service is loose, a field's `wire_rule` says how its JSON
may spell it: `"progress": "77"` and `77.0` are 77, null is 0, `77.9` and `-5` are errors.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Any, Self

import attrs

from jobpoll._errors import InvalidJobId, JobFailedError, JobPollError, JobStalled, WaitTimeout
from jobpoll._ids import check_job_id, same_job_id
from jobpoll._wire import (
    WireError,
    describe,
    record_from_wire,
    record_to_wire,
    structure_function,
    wire_rule,
)


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
        return STATUS_BY_VALUE.get(raw) or STATUS_BY_VALUE.get(raw.upper(), cls.UNKNOWN)

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


#: Each status by its string: a dict lookup, cheaper than `JobStatus(value)` on every poll.
STATUS_BY_VALUE: dict[str, JobStatus] = {status.value: status for status in JobStatus}

#: The terminal statuses that mean the job did not do its work.
FAILED_STATUSES = frozenset(
    {JobStatus.FAILED, JobStatus.DIED, JobStatus.COULDNT_START, JobStatus.CANCELED}
)
#: The statuses after which a job does not change. ARCHIVED is over, its outcome not reported.
TERMINAL_STATUSES = FAILED_STATUSES | {JobStatus.FINISHED, JobStatus.ARCHIVED}

MIN_PROGRESS = 0
MAX_PROGRESS = 100


#: Each status's own string, shared by every job rather than copied from each body.
_STATUS_STRINGS: dict[str, str] = {value: value for value in STATUS_BY_VALUE}


def _raw_status_from_wire(value: object, _type: object) -> str:
    if type(value) is not str:
        raise WireError(f"expected a string, got {describe(value)}")
    return _STATUS_STRINGS.get(value, value)


def _status_from_wire(value: object, _type: object) -> JobStatus:
    return JobStatus.parse(_raw_status_from_wire(value, _type))


_DIGITS = re.compile(r"[0-9]{1,3}")


def _progress_from_wire(value: object, _type: object) -> int:
    number: int | None = None
    if value is None:
        number = MIN_PROGRESS
    elif type(value) is int:
        number = value
    elif type(value) is float and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value)
    if number is None or not MIN_PROGRESS <= number <= MAX_PROGRESS:
        raise WireError(f"expected a whole number from 0 to 100, got {describe(value)}")
    return number


def _check_progress(_job: Job, _attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not MIN_PROGRESS <= value <= MAX_PROGRESS:
        raise ValueError(f"progress must be an int from 0 to 100, got {value!r}")


@attrs.frozen(kw_only=True)
class Job:
    """One snapshot of a job's state, as the server reported it.

    Attributes:
        id: the job's id; from `JobsClient.get_job`, as the caller spelt it, though the server
            may write it in another case (ids are compared case-insensitively, as UUIDs are).
        created_at: when the job was created (timezone-aware: UTC when the server names no
            offset).
        user: the (human) user or API key that owns the job, when reported.
        progress: percent done, 0 to 100 (0 when the server does not report it: the service
            documents progress only for running jobs).
        status: the status, `JobStatus.UNKNOWN` for one jobpoll does not know.
        raw_status: the status string exactly as the server sent it.
    """

    id: str
    created_at: datetime
    user: str | None = None
    progress: int = attrs.field(
        default=0, validator=_check_progress, metadata=wire_rule(read=_progress_from_wire)
    )
    status: JobStatus = attrs.field(metadata=wire_rule(read=_status_from_wire, written=False))
    raw_status: str = attrs.field(
        default=attrs.Factory(lambda job: job.status.value, takes_self=True),
        metadata=wire_rule(name="status", read=_raw_status_from_wire),
    )

    @property
    def is_terminal(self) -> bool:
        """True when the job will not change any more."""
        return self.status.is_terminal

    def to_dict(self) -> dict[str, Any]:
        """The job as the service writes it: `id`, `createdAt` (ISO 8601, `Z`), `user`,
        `progress` and `status` (the string the server sent), ready for `json.dumps`."""
        return record_to_wire(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """A job from what `to_dict` wrote (or a body of the service, parsed), by the same
        rules as the client's: `"progress": "77"` is 77, an unknown status is `UNKNOWN`.

        Raises:
            ValueError: the data is no valid job; the message names the field (`createdAt`).
        """
        return record_from_wire(data, cls)

    @property
    def succeeded(self) -> bool:
        """True when the job FINISHED."""
        return self.status.succeeded

    @property
    def failed(self) -> bool:
        """True when the job FAILED, DIED, COULDNT_START or was CANCELED (ARCHIVED is
        neither succeeded nor failed: the service no longer says)."""
        return self.status.failed


#: A `Job` from the service's JSON object (parsed), or a `WireError` naming the field.
structure_job = structure_function(Job)


job_to_wire = Job.to_dict
job_from_wire = Job.from_dict


@attrs.frozen
class JobResult:
    """How one job of `wait_for_jobs` ended.

    Attributes:
        job_id: the job's id, as a `str`.
        job: the last snapshot seen, or None when no poll got an answer.
        error: what awaiting `wait_for_job` on this job alone would have raised:
            `JobFailedError` for a job that FAILED, DIED, COULDNT_START or was CANCELED,
            `WaitTimeout`, `JobStalled`, `NotFound`, a `DecodeError`, ...; None when the job
            FINISHED or was ARCHIVED.
    """

    job_id: str
    job: Job | None
    error: JobPollError | None = None

    @property
    def ok(self) -> bool:
        """True when the job FINISHED or was ARCHIVED (`error` is None)."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data: `jobId`, `job` (as `Job.to_dict()` writes it, or
        None) and `error` (None, or its `type` (class name), `message` and `attributes`),
        e.g. to save outcomes and read them back after a crash with `from_dict`."""
        return record_to_wire(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """A result from what `to_dict` wrote. The error is of the class it was (its message
        and attributes as they were), made without running its constructor.

        Raises:
            ValueError: the data is no such result: a field or an error's attribute missing
                or of the wrong type, or ids of another job; the message names the field.
        """
        result = record_from_wire(data, cls)
        error, job = result.error, result.job
        if not isinstance(error, InvalidJobId):  # a refused id is reported as it was given
            try:
                check_job_id(result.job_id)
            except InvalidJobId as exc:
                raise WireError(f"jobId: {exc}", field="jobId") from None
            if job is not None and not same_job_id(result.job_id, job.id):
                raise WireError(f"job.id: {describe(job.id)} is not jobId", field="job.id")
        if isinstance(error, JobFailedError | JobStalled):
            if job is None:
                raise WireError(f"job: required with a {type(error).__name__}", field="job")
            error.job = job  # written once, as the result's own
        elif isinstance(error, WaitTimeout):
            error.job = job
        return result

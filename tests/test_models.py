"""`JobStatus` and `Job`: which statuses end a job, and how they read."""

from __future__ import annotations

from datetime import UTC, datetime

import attrs
import pytest

from jobpoll import Job, JobStatus

CREATED_AT = datetime(2025, 3, 31, 14, 3, 4, tzinfo=UTC)

# status: (is_terminal, succeeded, failed)
EXPECTED = {
    "ARCHIVED": (True, False, False),
    "UNKNOWN": (False, False, False),
    "CREATED": (False, False, False),
    "PERSISTED": (False, False, False),
    "SCHEDULED": (False, False, False),
    "WAITING": (False, False, False),
    "COULDNT_START": (True, False, True),
    "RUNNING": (False, False, False),
    "CANCELED": (True, False, True),
    "FINISHED": (True, True, False),
    "FAILED": (True, False, True),
    "DIED": (True, False, True),
}


def test_the_twelve_documented_statuses() -> None:
    """`JobStatus` holds exactly the service's twelve documented statuses."""
    assert {status.value for status in JobStatus} == set(EXPECTED)


@pytest.mark.parametrize(("raw", "expected"), EXPECTED.items(), ids=list(EXPECTED))
def test_status_outcome(raw: str, expected: tuple[bool, bool, bool]) -> None:
    """Each status says whether it is terminal, a success or a failure, on itself and on a Job."""
    status = JobStatus(raw)
    job = Job(id="j", created_at=CREATED_AT, status=status)
    assert (status.is_terminal, status.succeeded, status.failed) == expected
    assert (job.is_terminal, job.succeeded, job.failed) == expected


def test_status_is_a_str() -> None:
    """A status compares equal to, and formats as, the service's string."""
    assert JobStatus.RUNNING == "RUNNING"
    assert f"{JobStatus.COULDNT_START}" == "COULDNT_START"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param("FINISHED", JobStatus.FINISHED, id="known"),
        pytest.param("finished", JobStatus.FINISHED, id="lower-case"),
        pytest.param("PAUSED", JobStatus.UNKNOWN, id="never-seen"),
        pytest.param("", JobStatus.UNKNOWN, id="empty"),
    ],
)
def test_parse(raw: str, expected: JobStatus) -> None:
    """Parsing never fails: a string jobpoll does not know is UNKNOWN."""
    assert JobStatus.parse(raw) is expected


def test_job_defaults_and_immutability() -> None:
    """A Job's raw_status defaults to its status; progress to 0; it cannot be changed."""
    job = Job(id="j", created_at=CREATED_AT, status=JobStatus.RUNNING)
    assert (job.raw_status, job.progress, job.user) == ("RUNNING", 0, None)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        job.progress = 5  # type: ignore[misc]


@pytest.mark.parametrize("progress", [-1, 101, True, 7.0])
def test_job_refuses_progress_out_of_range(progress: object) -> None:
    """A Job built by hand is held to the same progress rule as one read from the wire."""
    with pytest.raises(ValueError, match="progress"):
        Job(id="j", created_at=CREATED_AT, status=JobStatus.RUNNING, progress=progress)  # type: ignore[arg-type]

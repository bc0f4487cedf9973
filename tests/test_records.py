"""`Job` and `JobResult` as plain data (`to_dict`) and back (`from_dict`), in the wire's names."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobpoll import (
    ConfigurationError,
    DecodeError,
    InvalidJobId,
    Job,
    JobFailedError,
    JobPollError,
    JobResult,
    JobStalled,
    JobStatus,
    NotFound,
    ServiceUnavailable,
    TransportError,
    WaitTimeout,
)

CREATED_AT = datetime(2025, 3, 31, 14, 3, 4, tzinfo=UTC)
JOB = Job(id="j-1", created_at=CREATED_AT, user="u", progress=60, status=JobStatus.DIED)


def through_json(data: dict[str, Any]) -> Any:
    return json.loads(json.dumps(data))


def test_job_to_dict_is_the_wire_format() -> None:
    """A job is written as the service writes it: camelCase, a `Z` timestamp, the raw status."""
    job = Job(id="j", created_at=CREATED_AT, progress=5, status=JobStatus.UNKNOWN, raw_status="X")
    assert job.to_dict() == {
        "id": "j",
        "createdAt": "2025-03-31T14:03:04Z",
        "user": None,
        "progress": 5,
        "status": "X",
    }


@given(
    job_id=st.text(min_size=1, max_size=40),
    seconds=st.integers(min_value=0, max_value=4_000_000_000),
    microseconds=st.integers(min_value=0, max_value=999_999),
    offset=st.integers(min_value=-14 * 60, max_value=14 * 60),
    user=st.none() | st.text(max_size=20),
    progress=st.integers(min_value=0, max_value=100),
    raw_status=st.sampled_from([status.value for status in JobStatus]) | st.text(max_size=12),
)
def test_job_round_trip(
    job_id: str,
    seconds: int,
    microseconds: int,
    offset: int,
    user: str | None,
    progress: int,
    raw_status: str,
) -> None:
    """Any job comes back equal from its dict, through JSON."""
    zone = timezone(timedelta(minutes=offset))
    created_at = datetime.fromtimestamp(seconds, zone).replace(microsecond=microseconds)
    job = Job(
        id=job_id,
        created_at=created_at,
        user=user,
        progress=progress,
        status=JobStatus.parse(raw_status),
        raw_status=raw_status,
    )
    assert Job.from_dict(through_json(job.to_dict())) == job


def test_job_from_dict_is_as_tolerant_and_strict_as_the_client() -> None:
    """The service's quirks are read as the client reads them; wrong data names its field."""
    body = {"id": "j", "createdAt": "2025-03-31T14:03:04", "progress": "77", "status": "running"}
    job = Job.from_dict(body)
    assert (job.progress, job.status, job.created_at) == (77, JobStatus.RUNNING, CREATED_AT)
    with pytest.raises(ValueError, match="progress"):
        Job.from_dict({**body, "progress": 77.9})
    with pytest.raises(ValueError, match="createdAt: required field missing"):
        Job.from_dict({"id": "j", "status": "RUNNING"})


FINISHED = Job(id="j-1", created_at=CREATED_AT, progress=100, status=JobStatus.FINISHED)
UNREACHABLE = TransportError(
    "request for job 'j-1' failed: cannot connect", job_id="j-1", reached=False
)


@pytest.mark.parametrize(
    ("result", "attributes"),
    [
        pytest.param(JobResult("j-1", FINISHED), {}, id="finished"),
        pytest.param(JobResult("j-1", JOB, JobFailedError(JOB)), {"job": JOB}, id="failed"),
        pytest.param(
            JobResult("j-1", None, NotFound(404, job_id="j-1", message="Job j-1 not found.")),
            {"http_status": 404, "message": "Job j-1 not found.", "transient": False},
            id="not-found",
        ),
        pytest.param(
            JobResult("j-1", JOB, JobStalled(JOB, 600.0)),
            {"job": JOB, "unchanged_for": 600.0},
            id="stalled",
        ),
        pytest.param(
            JobResult("j-1", None, WaitTimeout("j-1", timeout=5, last_error=UNREACHABLE)),
            {"job": None, "timeout": 5},
            id="timeout",
        ),
        pytest.param(
            JobResult("j-1", None, ServiceUnavailable(503, job_id="j-1", retry_after=2.5)),
            {"retry_after": 2.5, "transient": True},
            id="unavailable",
        ),
        pytest.param(
            JobResult("j-1", None, DecodeError("bad", job_id="j-1", field="progress")),
            {"field": "progress", "http_status": 200},
            id="decode",
        ),
    ],
)
def test_result_round_trip(result: JobResult, attributes: dict[str, Any]) -> None:
    """A result comes back through JSON with its job, and its error of the same class, message,
    job id and attributes."""
    data = through_json(result.to_dict())
    assert data["jobId"] == "j-1"
    back = JobResult.from_dict(data)
    assert (back.job_id, back.job, back.ok) == (result.job_id, result.job, result.ok)
    if result.error is None:
        assert back == result
        return
    assert type(back.error) is type(result.error)
    assert str(back.error) == str(result.error)
    assert back.error is not None
    assert back.error.job_id == result.error.job_id
    assert back.error.transient == result.error.transient
    for name, value in attributes.items():
        assert getattr(back.error, name) == value, name


def test_result_error_shape() -> None:
    """An error is written as its class name, its message, and its plain attributes; a wait's
    last error is nested the same way."""
    error = WaitTimeout("j-1", timeout=5, last_error=UNREACHABLE)
    written = JobResult("j-1", None, error).to_dict()["error"]
    assert written["type"] == "WaitTimeout"
    assert written["message"] == str(error)
    assert written["attributes"]["timeout"] == 5
    last = written["attributes"]["lastError"]
    assert (last["type"], last["attributes"]["reached"]) == ("TransportError", False)
    back = JobResult.from_dict(through_json(JobResult("j-1", None, error).to_dict())).error
    assert isinstance(back, WaitTimeout)
    assert isinstance(back.last_error, TransportError)
    assert back.last_error.reached is False


def test_unknown_error_type_read_as_the_base() -> None:
    """An error class jobpoll does not know (a newer version's) is read as `JobPollError`."""
    data = {"jobId": "j", "job": None, "error": {"type": "Brand New", "message": "m"}}
    error = JobResult.from_dict(data).error
    assert type(error) is JobPollError
    assert str(error) == "m"
    data["error"] = {"type": "ConfigurationError", "message": "m", "attributes": {"args": 1}}
    error = JobResult.from_dict(data).error
    assert isinstance(error, ConfigurationError)
    assert error.args == ("m",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param([], "expected a JSON object", id="not-an-object"),
        pytest.param({"job": None}, "jobId: required field missing", id="no-id"),
        pytest.param({"jobId": 5, "job": None}, "jobId: expected a string", id="id-not-str"),
        pytest.param(
            {"jobId": "j", "job": {"id": "j", "status": "RUNNING"}},
            "job.createdAt: required field missing",
            id="job-invalid",
        ),
        pytest.param(
            {"jobId": "j", "job": None, "error": "boom"},
            "error: expected an error object",
            id="error-not-object",
        ),
    ],
)
def test_result_from_dict_refuses(data: Any, message: str) -> None:
    """Data that is no result is a `ValueError` naming the field by its path."""
    with pytest.raises(ValueError, match=message):
        JobResult.from_dict(data)


def _written(result: JobResult, **changes: Any) -> Any:
    """What `to_dict` wrote for `result`, through JSON, each change applied at its path
    (`error__attributes__timeout`); `MISSING` removes the key."""
    data = through_json(result.to_dict())
    for path, value in changes.items():
        *parents, key = path.split("__")
        held = data
        for parent in parents:
            held = held[parent]
        if value is MISSING:
            del held[key]
        else:
            held[key] = value
    return data


MISSING = object()
TIMED_OUT = JobResult("j-1", JOB, WaitTimeout("j-1", timeout=5, job=JOB, last_error=UNREACHABLE))
UNAVAILABLE = JobResult("j-1", None, ServiceUnavailable(503, job_id="j-1", retry_after=2.5))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            _written(TIMED_OUT, error__attributes__timeout=MISSING),
            "^error.attributes.timeout: required field missing",
            id="attribute-missing",
        ),
        pytest.param(
            _written(UNAVAILABLE, error__attributes__retryAfter="soon"),
            '^error.attributes.retryAfter: expected a number, got "soon"',
            id="attribute-ill-typed",
        ),
        pytest.param(
            _written(UNAVAILABLE, error__attributes__retryAfter=10**400),
            "^error.attributes.retryAfter: expected a number, got 1000",
            id="attribute-too-large-for-a-float",
        ),
        pytest.param(
            _written(UNAVAILABLE, error__attributes__httpStatus="503"),
            "^error.attributes.httpStatus: expected a whole number",
            id="status-a-string",
        ),
        pytest.param(
            _written(UNAVAILABLE, error__attributes__transient="no"),
            "^error.attributes.transient: expected true or false",
            id="flag-a-string",
        ),
        pytest.param(
            _written(TIMED_OUT, error__attributes__lastError__attributes__reached=MISSING),
            "^error.attributes.lastError.attributes.reached: required field missing",
            id="nested-attribute-missing",
        ),
        pytest.param(
            _written(TIMED_OUT, job__id="j-2"),
            '^job.id: "j-2" is not jobId',
            id="job-of-another-id",
        ),
        pytest.param(
            _written(JobResult("j-1", FINISHED), jobId="j-1\n"),
            "^jobId: the job id .* control characters",
            id="id-never-sendable",
        ),
        pytest.param(
            _written(JobResult("j-1", JOB, JobFailedError(JOB)), job=None),
            "^job: required with a JobFailedError",
            id="failure-without-its-job",
        ),
    ],
)
def test_result_from_dict_refuses_what_to_dict_never_writes(data: Any, message: str) -> None:
    """Each attribute of an error is read as the type its class declares, none missing that
    the class has no default for, and the job must be the result's."""
    with pytest.raises(ValueError, match=message):
        JobResult.from_dict(data)


def test_a_whole_number_of_seconds_reads_back_as_written() -> None:
    """A `timeout` given as a whole number is written as one and read back the same."""
    back = JobResult.from_dict(through_json(TIMED_OUT.to_dict()))
    assert isinstance(back.error, WaitTimeout)
    assert (type(back.error.timeout), back.to_dict()) == (int, TIMED_OUT.to_dict())


def test_result_ids_compared_as_the_client_compares_them() -> None:
    """A job id in another case names the same job; the result of an id refused before any
    poll is read back with the id as it was given."""
    data = _written(JobResult("abc-1", FINISHED), job__id="ABC-1")
    assert JobResult.from_dict(data).job == attrs.evolve(FINISHED, id="ABC-1")
    refused = JobResult("", None, InvalidJobId("the job id is empty", job_id=""))
    back = JobResult.from_dict(through_json(refused.to_dict()))
    assert (back.job_id, type(back.error)) == ("", InvalidJobId)
    assert str(back.error) == str(refused.error)

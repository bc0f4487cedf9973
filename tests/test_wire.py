"""The wire format: tolerant where the service is loose, strict where data is wrong."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jobpoll
from jobpoll import Job, JobStatus
from jobpoll._answer import decode_job
from jobpoll._models import STATUS_BY_VALUE, job_to_wire
from jobpoll._wire import WireError

GOOD: dict[str, Any] = {
    "id": "35f23c03-1c22-45fe-9484-3ffe769325de",
    "createdAt": "2025-03-31T14:03:04Z",
    "user": "742429-234242-4343-232323",
    "progress": "77",
    "status": "RUNNING",
}


def decode(**changes: Any) -> Job:
    body = {**GOOD, **changes}
    return decode_job(json.dumps({k: v for k, v in body.items() if v is not ...}))


def test_reference_example() -> None:
    """The service's own reference example, progress as the string "77", decodes."""
    job = decode()
    assert job == Job(
        id="35f23c03-1c22-45fe-9484-3ffe769325de",
        created_at=datetime(2025, 3, 31, 14, 3, 4, tzinfo=UTC),
        user="742429-234242-4343-232323",
        progress=77,
        status=JobStatus.RUNNING,
        raw_status="RUNNING",
    )


@pytest.mark.parametrize(
    ("progress", "expected"),
    [
        pytest.param(77, 77, id="int"),
        pytest.param("77", 77, id="string"),
        pytest.param(" 7 ", 7, id="string-with-spaces"),
        pytest.param(77.0, 77, id="whole-float"),
        pytest.param(0, 0, id="zero"),
        pytest.param(100, 100, id="hundred"),
        pytest.param(None, 0, id="null"),
        pytest.param(..., 0, id="missing"),
    ],
)
def test_progress_tolerated(progress: object, expected: int) -> None:
    """Progress is read from every form the service is known or likely to send."""
    assert decode(progress=progress).progress == expected


@pytest.mark.parametrize(
    "progress",
    [
        pytest.param(77.9, id="fraction"),
        pytest.param(True, id="boolean"),
        pytest.param(-5, id="negative"),
        pytest.param(101, id="over-100"),
        pytest.param(-929647, id="mock-random"),
        pytest.param("77.9", id="fraction-string"),
        pytest.param("abc", id="text"),
        pytest.param("", id="empty-string"),
        pytest.param([77], id="array"),
        pytest.param(1e400, id="infinity"),
    ],
)
def test_progress_refused(progress: object) -> None:
    """A wrong progress is an error naming the field, never truncated or clamped."""
    with pytest.raises(WireError, match=r"^progress: ") as caught:
        decode(progress=progress)
    assert caught.value.field == "progress"
    assert not caught.value.malformed


def test_unknown_status_kept() -> None:
    """A status jobpoll never heard of is UNKNOWN, the string kept."""
    job = decode(status="PAUSED_BY_OPERATOR")
    assert (job.status, job.raw_status) == (JobStatus.UNKNOWN, "PAUSED_BY_OPERATOR")
    assert not job.is_terminal


def test_extra_keys_ignored() -> None:
    """Keys the service may add later do not disturb decoding."""
    assert decode(priority=3, links={"self": "x"}) == decode()


@pytest.mark.parametrize(
    ("created_at", "expected"),
    [
        pytest.param("2025-03-31T14:03:04Z", datetime(2025, 3, 31, 14, 3, 4, tzinfo=UTC), id="Z"),
        pytest.param(
            "2025-03-31T16:03:04+02:00",
            datetime(2025, 3, 31, 16, 3, 4, tzinfo=timezone(timedelta(hours=2))),
            id="offset",
        ),
        pytest.param(
            "2025-03-31T14:03:04.123456Z",
            datetime(2025, 3, 31, 14, 3, 4, 123456, tzinfo=UTC),
            id="fraction",
        ),
        pytest.param(
            "2025-03-31T14:03:04", datetime(2025, 3, 31, 14, 3, 4, tzinfo=UTC), id="naive"
        ),
    ],
)
def test_created_at(created_at: str, expected: datetime) -> None:
    """createdAt is always timezone-aware; a time with no offset is taken as UTC."""
    parsed = decode(createdAt=created_at).created_at
    assert parsed == expected
    assert parsed.tzinfo is not None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"createdAt": "dolor irure"}, "createdAt", id="createdAt-no-date"),
        pytest.param({"createdAt": 1743429784}, "createdAt", id="createdAt-number"),
        pytest.param({"createdAt": ...}, "createdAt", id="createdAt-missing"),
        pytest.param({"id": ...}, "id", id="id-missing"),
        pytest.param({"id": 42}, "id", id="id-number"),
        pytest.param({"status": ...}, "status", id="status-missing"),
        pytest.param({"status": 3}, "status", id="status-number"),
        pytest.param({"user": 7}, "user", id="user-number"),
    ],
)
def test_invalid_field_named(changes: dict[str, Any], field: str) -> None:
    """Each invalid or missing field is an error naming it by its wire name."""
    with pytest.raises(WireError, match=rf"^{field}: ") as caught:
        decode(**changes)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("body", "malformed"),
    [
        pytest.param(b"<html><body>Bad gateway</body></html>", True, id="html"),
        pytest.param(b'{"id": "35f2', True, id="truncated"),
        pytest.param(b"", True, id="empty"),
        pytest.param(b"\xff\xfe\x00", True, id="not-utf8"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, True, id="deeply-nested"),
        pytest.param(b"[]", False, id="array"),
        pytest.param(b'"RUNNING"', False, id="string"),
        pytest.param(b"null", False, id="null"),
    ],
)
def test_body_not_an_object(body: bytes, malformed: bool) -> None:
    """A body that is no JSON object is an error about the body, not a field."""
    with pytest.raises(WireError) as caught:
        decode_job(body)
    assert caught.value.field is None
    assert caught.value.malformed is malformed


def test_round_trip() -> None:
    """What the fake service writes is what the client reads."""
    job = decode(status="DIED", progress=40)
    wire = job_to_wire(job)
    assert wire == {**GOOD, "status": "DIED", "progress": 40}
    assert decode_job(json.dumps(wire)) == job


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(deadline=None)  # the machine is shared: time is not what this test is about
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "id": JSON_VALUES,
            "createdAt": JSON_VALUES | st.datetimes().map(datetime.isoformat),
            "user": JSON_VALUES,
            "progress": JSON_VALUES | st.integers(-5, 105).map(str),
            "status": JSON_VALUES | st.sampled_from([s.value for s in JobStatus]),
        },
    )
    | JSON_VALUES
)
def test_any_json_is_a_job_or_a_wire_error(value: object) -> None:
    """Whatever JSON arrives, decoding gives a valid Job or a WireError, nothing else."""
    try:
        job = decode_job(json.dumps(value))
    except WireError:
        return
    assert isinstance(job.id, str)
    assert job.created_at.tzinfo is not None
    assert 0 <= job.progress <= 100
    assert job.status is JobStatus.parse(job.raw_status)


def test_strings_shared_rather_than_copied() -> None:
    """The asked id, the status and the user are one string each, however many jobs hold them:
    a fan-out keeps a job per id, so a copy per job would cost memory per job."""
    asked = "".join(["35f23c03-1c22-45fe-9484-", "3ffe769325de"])  # not the literal's object
    body = json.dumps(GOOD)
    first, second = decode_job(body, job_id=asked), decode_job(body, job_id=asked)
    assert first.id is asked
    assert first.raw_status is JobStatus.RUNNING.value
    assert first.user is second.user
    assert first == decode_job(body)


def test_another_id_is_not_replaced() -> None:
    """Only the same id is shared: an answer about another job keeps what the body says (the
    client refuses it, quoting it)."""
    job = decode_job(json.dumps({**GOOD, "id": "other"}), job_id=GOOD["id"])
    assert job.id == "other"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(json.dumps(GOOD).encode("utf-16"), id="utf-16-with-bom"),
        pytest.param(json.dumps(GOOD).encode("utf-8-sig"), id="utf-8-with-bom"),
        pytest.param(json.dumps(GOOD, indent=2).encode(), id="indented"),
        pytest.param(json.dumps(GOOD, ensure_ascii=False).encode() + b"\n", id="trailing-space"),
    ],
)
def test_bodies_json_loads_reads_decode_alike(body: bytes) -> None:
    """A body in another encoding or layout than the service's reads as `json.loads` reads it."""
    assert decode_job(body) == decode()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"id": "\xe9t\xe9"}', id="latin-1"),
        pytest.param(b'{"id": "x"} trailing', id="trailing-data"),
        pytest.param(b'{"id": ' + b"[" * 100_000, id="deeply-nested"),
    ],
)
def test_broken_bodies_explained_as_json_loads_does(body: bytes) -> None:
    """A broken body that starts like the service's is still explained in `json.loads`' words."""
    try:
        json.loads(body)
    except (ValueError, RecursionError) as exc:
        expected = exc
    with pytest.raises(WireError) as caught:
        decode_job(body)
    assert caught.value.malformed
    if isinstance(expected, ValueError):
        assert str(caught.value) == f"body is not valid JSON ({expected})"


def _imports(module: str) -> list[tuple[str, bool]]:
    """The jobpoll modules a module imports, each with whether it is imported in a function."""
    tree = ast.parse((Path(jobpoll.__file__).parent / f"{module}.py").read_text())
    late = {
        id(node)
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(function)
    }
    return [
        (node.module if node.module != "jobpoll" else f"jobpoll.{alias.name}", id(node) in late)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jobpoll")
        for alias in node.names
    ]


def test_converter_imports_no_model() -> None:
    """The models import the converter, never the reverse, and neither imports inside a
    function: the two form no cycle, not even one broken by a late import."""
    converter, models = _imports("_wire"), _imports("_models")
    assert not [name for name, _ in converter if name.startswith("jobpoll._models")]
    assert ("jobpoll._wire", False) in models
    assert not [name for name, late in converter + models if late]


def test_one_map_of_status_strings() -> None:
    """Each status's string leads to it through the one map the models export."""
    assert {status.value: status for status in JobStatus} == STATUS_BY_VALUE
    for value, status in STATUS_BY_VALUE.items():
        assert JobStatus.parse(value.lower()) is status

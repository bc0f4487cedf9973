"""The form a SAQ wait's records keep its checkpoint in (`_saq_form`): its values in the
declarations' order, read back to the whole checkpoint `resume_job` reads, as are the forms
written before it. No Redis: the checkpoints are taken on fixed clocks."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from jobpoll import CheckpointError, JobStatus, PollPolicy, TransportError
from jobpoll._checkpoint import JobCheckpoint, job_checkpoint, resume_job
from jobpoll._models import Job
from jobpoll._rules import Rules
from jobpoll._saq_form import checkpoint_of, link_checkpoint, resume_link
from jobpoll._state import JobState, PaceState

JOB_ID = "67eb0a8c-22e7-4b4e-8b31-9936493e42a9"
#: The wall clock the checkpoints below were taken at (a whole second: `taken_at` is exact),
#: and the wait's clock then.
WALL = datetime(2026, 12, 7, 16, 55, 53, tzinfo=UTC).timestamp()
NOW = 1000.0
POLICY = PollPolicy(clock=lambda: NOW, wall_clock=lambda: WALL)

#: A wait polled five times, its job's progress moving, with a timeout: its whole checkpoint
#: (`JobWait.checkpoint()`, which the oldest links carry as their `checkpoint` argument)...
WHOLE: dict[str, Any] = {
    "version": 3,
    "taken_at": "2026-12-07T16:55:53Z",
    "timeout": 3600.0,
    "deadline": "2026-12-07T17:55:52.692886Z",
    "owed": False,
    "job_id": JOB_ID,
    "job": {
        "id": JOB_ID,
        "createdAt": "2026-12-07T16:55:52Z",
        "user": "742429-234242-4343-232323",
        "progress": 28,
        "status": "RUNNING",
    },
    "failures": 0,
    "polls": 5,
    "answers": 5,
    "started_at": -0.307115,
    "changed_at": -0.260972,
    "next_poll_at": "2026-12-07T16:56:29.870944Z",
    "pace": {
        "blind_index": 1,
        "status": "RUNNING",
        "started_at": -0.299242,
        "phase_started_at": -0.299242,
        "phase_progress": 0,
        "window_at": -0.270325,
        "window_progress": 14,
        "middle_at": -0.26381,
        "middle_progress": 21,
        "last_at": -0.260972,
        "last_progress": 28,
        "value_seen_at": -0.260972,
        "poll_before_at": -0.26381,
        "previous_at": -0.26381,
        "previous_progress": 21,
        "first_move_at": -0.275235,
        "first_move_progress": 7,
        "slower_moves": 0,
        "slowing_from": 1425.6641740312712,
        "move_before_pace": 1074.4392885896216,
        "step": 7,
        "jumps": 0,
    },
}
#: ...the keyed form of the previous version (a link of it carries this as its `saved`
#: argument: the whole checkpoint less the job id and the fields at their defaults)...
KEYED: dict[str, Any] = {
    **{k: v for k, v in WHOLE.items() if k not in ("job_id", "owed", "failures")},
    "job": {k: v for k, v in WHOLE["job"].items() if k != "id"},
    "pace": {
        k: v
        for k, v in WHOLE["pace"].items()
        if k not in ("phase_progress", "slower_moves", "jumps")
    },
}
#: ...and the links' form now: its values in declared order, times in whole microseconds
#: (`taken_at` after the Unix epoch, the others after it), the trailing defaults left out.
# fmt: off
FORM: list[Any] = [
    [3, 1796662553000000, 3600.0, 3599692886],
    [KEYED["job"], 0, 5, 5, -307115, -260972, 36870944,
     [1, "RUNNING", -299242, -299242, 0, -270325, 14, -263810, 21, -260972, 28, -260972,
      -263810, -263810, 21, -275235, 7, 0, 1425.6641740312712, 1074.4392885896216, 7]],
]
# fmt: on


def _through_json(data: Any) -> Any:
    return json.loads(json.dumps(data))


def test_a_wait_is_kept_as_its_values_in_declared_order() -> None:
    """The links' form of a wait is its header's values and its state's, in the order
    declared, less the trailing defaults and the job id, times as whole microseconds: under
    40% of its whole checkpoint's JSON."""
    rules, state, _owed = resume_job(WHOLE, JOB_ID, POLICY)
    form = link_checkpoint(rules, state)
    assert form == FORM
    assert len(json.dumps(form, separators=(",", ":"))) < 0.4 * len(json.dumps(WHOLE))
    assert job_checkpoint(rules, state) == WHOLE  # the whole checkpoint is as it was


def _wait(rules: Rules, state: JobState) -> tuple[Any, ...]:
    """What a wait resumed from a checkpoint goes on from: its deadline and its state."""
    return rules.timeout, rules.deadline, state


@pytest.mark.parametrize(
    "kept",
    [
        pytest.param(FORM, id="links-form"),
        pytest.param(KEYED, id="keyed-form-of-the-previous-version"),
        pytest.param(WHOLE, id="whole-checkpoint-of-the-oldest"),
    ],
)
def test_every_form_reads_back_to_the_same_wait(kept: Any) -> None:
    """The links' form, the keyed form a link of the previous version carries and the whole
    checkpoint the oldest carry each resume the same wait as the whole checkpoint does."""
    expected_rules, expected_state, _owed = resume_job(WHOLE, JOB_ID, POLICY)
    rules, state = resume_link(_through_json(kept), JOB_ID, POLICY)
    assert _wait(rules, state) == _wait(expected_rules, expected_state)


def test_the_keyed_form_reads_back_to_the_whole_checkpoint() -> None:
    """The keyed form is the whole checkpoint less what the declarations say: put back, it is
    the whole checkpoint (which `resume_job` reads)."""
    assert checkpoint_of(_through_json(KEYED), JOB_ID, POLICY) == WHOLE


def test_the_forms_order_is_the_declared_order_extended_at_its_end() -> None:
    """The fields of each record, in the order the links' form was first written with, are
    the first of its saved fields as declared now: a field is added at the end of its class,
    where a form written before it stands for its default."""
    written_with = {
        JobCheckpoint: ["version", "taken_at", "timeout", "deadline", "owed"],
        JobState: [
            "job_id",  # the link's own: not in the form
            *["job", "failures", "polls", "answers", "started_at", "changed_at"],
            *["next_poll_at", "pace"],
        ],
        PaceState: [
            *["blind_index", "status", "started_at", "phase_started_at", "phase_progress"],
            *["window_at", "window_progress", "middle_at", "middle_progress", "last_at"],
            *["last_progress", "value_seen_at", "poll_before_at", "previous_at"],
            *["previous_progress", "first_move_at", "first_move_progress", "slower_moves"],
            *["slowing_from", "move_before_pace", "step", "jumps"],
        ],
    }
    for cls, names in written_with.items():
        saved = [f.name for f in attrs.fields(cls) if f.metadata.get("saved", True)]
        assert saved[: len(names)] == names, cls.__name__


# Any state, every field set or not: the form reads back to the whole checkpoint.


def _field_values(field: attrs.Attribute[Any]) -> st.SearchStrategy[Any]:
    """Values a field of `JobState` or `PaceState` may hold, by its declaration."""
    low, high = field.metadata.get("min"), field.metadata.get("max")
    time = field.metadata.get("time")
    if time == "past":  # up to the wait's clock now; 0.0: not set
        return st.just(0.0) | st.floats(0.0, NOW)
    if time == "utc":
        return st.none() | st.floats(-1e7, 1e7)
    if field.type is int:
        return st.integers(low, high)
    if field.type is float:
        return st.floats(low, 1e9)
    if field.name == "status":
        return st.none() | st.sampled_from(["RUNNING", "QUEUED", "SOMETHING_NEW"])
    if field.name == "job":
        return st.none() | _jobs
    if field.name == "pace":
        return st.none() | _records(PaceState)
    return st.none()  # what is not saved (`last_error`)


def _records(cls: type) -> st.SearchStrategy[Any]:
    fields = {f.name: _field_values(f) for f in attrs.fields(cls) if f.name != "job_id"}
    extra = {"job_id": st.just(JOB_ID)} if cls is JobState else {}
    return st.builds(cls, **fields, **extra)


_jobs = st.builds(
    Job,
    id=st.sampled_from([JOB_ID, JOB_ID.upper()]),  # the service may spell it otherwise
    created_at=st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
    user=st.none() | st.text(max_size=20),
    progress=st.integers(0, 100),
    status=st.sampled_from(list(JobStatus)),
)


@given(
    state=_records(JobState),
    timeout=st.none() | st.floats(0.001, 1e7),
    deadline=st.floats(-1e7, 1e7),
)
def test_any_state_reads_back_from_its_form(
    state: JobState, timeout: float | None, deadline: float
) -> None:
    """Any state of a wait (each field at its default or not, the job seen spelling its id
    otherwise or not, with a timeout or none) in the links' form, through JSON, resumes the
    wait its whole checkpoint resumes, and is written again as it was."""
    rules = Rules(POLICY, timeout, None if timeout is None else deadline)
    form = _through_json(link_checkpoint(rules, state))
    whole = _through_json(job_checkpoint(rules, state))
    try:
        expected_rules, expected_state, _owed = resume_job(whole, JOB_ID, POLICY)
    except CheckpointError as exc:  # a state no wait is in (a pace's values at odds, say)
        event("refused")
        with pytest.raises(CheckpointError, match=f"^{re.escape(str(exc))}$"):
            resume_link(form, JOB_ID, POLICY)
        return
    event("resumed")
    resumed_rules, resumed_state = resume_link(form, JOB_ID, POLICY)
    assert _wait(resumed_rules, resumed_state) == _wait(expected_rules, expected_state)
    assert _through_json(link_checkpoint(resumed_rules, resumed_state)) == form


@st.composite
def _waits(draw: st.DrawFn) -> tuple[Rules, JobState]:
    """A wait as its rules leave it (`Rules`), after answers of any status and progress and
    failed polls, at any times up to the wait's clock now, with a timeout or none."""
    timeout = draw(st.none() | st.floats(1.0, 1e7))
    policy = attrs.evolve(POLICY, rng=draw(st.randoms(use_true_random=False)).random)
    rules, state = Rules(policy, timeout), JobState(job_id=JOB_ID)
    now = draw(st.floats(1.0, NOW / 2))  # a clock at 0.0 reads as "not set"
    rules.begin(state, now)
    statuses = st.sampled_from([s for s in JobStatus if not s.is_terminal])
    answers = st.none() | st.tuples(statuses, st.integers(0, 100))  # None: the poll failed
    for answer in draw(st.lists(st.tuples(st.floats(0.001, 60.0), answers), max_size=12)):
        now += answer[0]
        if now > NOW or (rules.deadline is not None and now >= rules.deadline):
            break
        rules.send(state, now)
        if answer[1] is None:
            rules.failed(state, TransportError("reset", reached=True), now)
            continue
        status, progress = answer[1]
        job = Job(id=JOB_ID, created_at=datetime(2026, 12, 7, tzinfo=UTC), status=status)
        _news, delay = rules.answered(state, attrs.evolve(job, progress=progress), now)
        assert delay is not None
        state.next_poll_at = now + delay
    return rules, state


@given(wait=_waits())
def test_any_wait_its_rules_leave_resumes_from_its_form(wait: tuple[Rules, JobState]) -> None:
    """A wait as its rules leave it, in the links' form, through JSON, resumes the wait its
    whole checkpoint resumes, and is written again as it was."""
    rules, state = wait
    form = _through_json(link_checkpoint(rules, state))
    whole = _through_json(job_checkpoint(rules, state))
    expected_rules, expected_state, _owed = resume_job(whole, JOB_ID, POLICY)
    resumed_rules, resumed_state = resume_link(form, JOB_ID, POLICY)
    assert _wait(resumed_rules, resumed_state) == _wait(expected_rules, expected_state)
    assert _through_json(link_checkpoint(resumed_rules, resumed_state)) == form


def test_a_state_with_every_field_set_reads_back_to_the_same_state() -> None:
    """A state whose every saved field is off its default reads back to an equal state."""
    pace = PaceState(**{f.name: 1 for f in attrs.fields(PaceState) if f.type is int})
    pace.status = "RUNNING"
    # Progress moved, its values in the order a wait's own updates keep them (`resumed` checks).
    pace.phase_progress, pace.first_move_progress, pace.window_progress = 1, 2, 3
    pace.middle_progress, pace.previous_progress, pace.last_progress = 4, 5, 6
    for field in attrs.fields(PaceState):
        if field.type is float:
            setattr(pace, field.name, 990.5 if field.metadata.get("time") else 2.5)
    job = Job(id=JOB_ID, created_at=datetime(2026, 1, 2, tzinfo=UTC), status=JobStatus.RUNNING)
    state = JobState(job_id=JOB_ID, job=job, failures=1, polls=2, answers=1)
    state.started_at, state.changed_at, state.next_poll_at, state.pace = 990.0, 995.0, 1010.0, pace
    rules = Rules(POLICY, 60.0, 1050.0)
    form = _through_json(link_checkpoint(rules, state))
    # Every field set: none left out (but the job id and `last_error`, which is not saved).
    assert len(form[1]) == len(attrs.fields(JobState)) - 2
    assert len(form[1][-1]) == len(attrs.fields(PaceState))
    resumed_rules, resumed_state = resume_link(form, JOB_ID, POLICY)
    assert _wait(resumed_rules, resumed_state) == _wait(rules, state)
    assert resumed_state.job is not None
    assert resumed_state.job.status == "RUNNING"


# What is no form of a checkpoint is refused, never read as a wait.


@pytest.mark.parametrize(
    "form",
    [
        pytest.param([], id="empty"),
        pytest.param([[], []], id="empty-lists"),
        pytest.param([3, 1796662553000000], id="no-lists"),
        pytest.param([[4, *FORM[0][1:]], FORM[1]], id="a-later-version"),
        pytest.param([[3, "yesterday"], FORM[1]], id="taken-at-no-time"),
        pytest.param([[3, 10**30], FORM[1]], id="taken-at-out-of-time"),
        pytest.param([[3, None, None, FORM[0][3]], FORM[1]], id="taken-at-null"),
        pytest.param([[3, *FORM[0][1:3], "soon"], FORM[1]], id="deadline-no-number"),
        pytest.param([[3, *FORM[0][1:3], 10**30], FORM[1]], id="deadline-out-of-time"),
        pytest.param([FORM[0], [*FORM[1][:4], "-3", *FORM[1][5:]]], id="time-a-string"),
        pytest.param([FORM[0], [*FORM[1][:4], 10**6, *FORM[1][5:]]], id="past-time-ahead"),
        pytest.param([FORM[0], [*FORM[1][:7], [*FORM[1][7][:2], True]]], id="time-a-bool"),
        pytest.param([FORM[0], [*FORM[1][:2], -1, *FORM[1][3:]]], id="polls-below-0"),
        pytest.param([FORM[0], [*FORM[1][:4], -0.3, *FORM[1][5:]]], id="past-time-in-seconds"),
        pytest.param([FORM[0], [*FORM[1][:1], None, *FORM[1][2:]]], id="a-count-null"),
        pytest.param([FORM[0], [*FORM[1][:7], {"step": 7}]], id="pace-an-object"),
        pytest.param([FORM[0], ["RUNNING", *FORM[1][1:]]], id="job-a-string"),
        pytest.param([FORM[0], [{**FORM[1][0], "id": "other"}, *FORM[1][1:]]], id="another-job"),
        pytest.param([*FORM, []], id="three-lists"),
        pytest.param([FORM[0]], id="a-header-alone"),
        pytest.param([[3, FORM[0][1], -1.0], FORM[1]], id="timeout-below-0"),
        pytest.param([[3, FORM[0][1], 0], FORM[1]], id="timeout-0"),
        pytest.param([[3.0, *FORM[0][1:]], FORM[1]], id="version-a-float"),
        pytest.param([FORM[0], [*FORM[1][:4], -(10**400), *FORM[1][5:]]], id="past-time-huge"),
        pytest.param([FORM[0], [*FORM[1][:7], [*FORM[1][7][:20], 0]]], id="pace-step-0"),
    ],
)
def test_a_damaged_form_is_a_checkpoint_error(form: list[Any]) -> None:
    """A form damaged or of a later version is refused with a `CheckpointError` naming what
    is wrong, never read as a wait."""
    with pytest.raises(CheckpointError, match="not a valid wait_for_job checkpoint") as refused:
        resume_link(_through_json(form), JOB_ID, POLICY)
    assert type(refused.value) is CheckpointError  # not a user's `ConfigurationError`, say


def test_a_form_of_a_later_version_says_so_whatever_else_it_holds() -> None:
    """A form whose version this jobpoll does not read is refused for its version, not for a
    value a later version writes otherwise (a rolling upgrade's workers read each other's)."""
    with pytest.raises(CheckpointError, match="version 4 is not"):
        resume_link([[4, "2026-12-07T16:55:53Z", -1.0], []], JOB_ID, POLICY)


def test_a_wait_whose_times_cannot_be_written_is_a_checkpoint_error() -> None:
    """A state no wait could be in (a time that is no number) is a `CheckpointError` as the
    form is written, as its whole checkpoint is, never a bare `ValueError`."""
    rules, state, _owed = resume_job(WHOLE, JOB_ID, POLICY)
    state.next_poll_at = math.nan
    with pytest.raises(CheckpointError, match="cannot be taken"):
        link_checkpoint(rules, state)

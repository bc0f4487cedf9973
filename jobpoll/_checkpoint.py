"""Checkpoints: a header (version, when taken, timeout, deadline) and the wait's `JobState`
records as `_saved` writes them. Reading one back is strict: what this jobpoll did not write
is a `CheckpointError` naming the field, never a silent restart. Versions 1 and 2 are upgraded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

import attrs
import cattrs

from jobpoll._errors import CheckpointError, JobPollError
from jobpoll._ids import check_job_id, same_job_id
from jobpoll._policy import PollPolicy
from jobpoll._rules import Rules, check_timeout
from jobpoll._saved import Timebase, converter, restore_state, saved_state
from jobpoll._state import JobState, PaceState, RateState

#: The version of the checkpoint format written; `_plain` upgrades the older ones.
VERSION = 3


@attrs.frozen(kw_only=True)
class WaitCheckpoint:
    """A checkpoint's header: what a wait saves besides its jobs. Its times are marked
    "utc", as those of `_state`'s records are, for the links' form (`_saq_form`)."""

    version: int
    taken_at: datetime = attrs.field(metadata={"time": "utc"})
    timeout: float | None = attrs.field(validator=lambda _self, _field, value: check_timeout(value))
    deadline: datetime | None = attrs.field(metadata={"time": "utc"})


@attrs.frozen(kw_only=True)
class JobCheckpoint(WaitCheckpoint):
    """A `JobWait`'s header, flat beside its one `JobState`. `owed`: the iteration is owed
    the last snapshot (its async `on_update` was cancelled); a resumed wait yields it first."""

    owed: bool = False


@attrs.frozen(kw_only=True)
class FanoutCheckpoint(WaitCheckpoint):
    """The checkpoint of a `JobsWait`: `jobs` taken in and not reported (those ready but not
    handed out included), `unstarted` ids not taken in yet, and `rate`: what the client had
    learned of the service's rate limit (None: nothing)."""

    polls: int = attrs.field(validator=attrs.validators.ge(0))
    rate: RateState | None
    jobs: list[JobState]
    unstarted: list[str]


def dump(header: WaitCheckpoint, states: list[dict[str, Any]] | dict[str, Any]) -> dict[str, Any]:
    """The checkpoint as a JSON-ready dict: a fan-out's states under `jobs`, one wait's flat."""
    data: dict[str, Any] = converter.unstructure(header)  # the version first, where one looks
    if isinstance(states, dict):
        return {**data, **states}
    return {**data, "jobs": states}


# Reading back: checks across fields, which the records' own bounds cannot express.


@contextlib.contextmanager
def checkpoint_errors(what: str) -> Iterator[None]:
    """A value a checkpoint cannot hold is a `CheckpointError` saying `what` failed, never a
    plain `ValueError`, `TypeError` or `OverflowError` a worker's `finally` would not expect."""
    try:
        yield
    except JobPollError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise CheckpointError(f"{what}: {exc}") from exc


def _check_state(state: JobState) -> None:
    try:
        check_job_id(state.job_id)
    except JobPollError as exc:
        raise ValueError(f"job_id: {exc}") from None
    if state.job is not None and not same_job_id(state.job_id, state.job.id):
        raise ValueError(f"job: the job seen is {state.job.id!r}, not {state.job_id!r}")
    if state.pace is None:
        if state.polls or state.job is not None:
            raise ValueError("pace: missing for a wait that has polled")
        return
    _check_pace(state.pace)


def _check_pace(p: PaceState) -> None:
    # Once progress has moved in its status, a pace's schedule divides by its step and by its
    # paces: what its own updates keep true must hold, or the next answer would raise a
    # ZeroDivisionError or a math domain error, not this.
    if p.middle_progress < 0:
        # Progress has not moved in its status: the last reading is the status's first (a
        # move from below it would divide by a step of 0, or a pace below 0).
        if p.status is not None and not 0 <= p.phase_progress == p.last_progress:
            raise ValueError("pace: its progress values contradict each other")
        return
    if p.step < 1:
        raise ValueError(f"step must be 1 or more once progress moved, got {p.step}")
    if not _progress_in_order(p):
        raise ValueError("pace: its progress values contradict each other")
    if not (
        p.started_at <= p.phase_started_at <= p.first_move_at <= p.window_at <= p.middle_at
        and p.first_move_at <= p.previous_at
        and max(p.middle_at, p.previous_at, p.poll_before_at) <= p.value_seen_at <= p.last_at
    ):
        raise ValueError("pace: its times contradict each other")


def _progress_in_order(p: PaceState) -> bool:
    return (
        p.phase_progress < p.first_move_progress <= p.window_progress
        and p.window_progress <= p.middle_progress <= p.last_progress
        and p.first_move_progress <= p.previous_progress <= p.last_progress
        and (p.previous_progress < p.last_progress or p.previous_at >= p.value_seen_at)
        and (p.first_move_progress < p.last_progress or p.first_move_at >= p.value_seen_at)
    )


def _check_clocks(header: WaitCheckpoint, *, started: bool) -> None:
    if header.deadline is not None and header.timeout is None:
        raise ValueError("a deadline without a timeout")
    # A wait's deadline is set when it starts (a fan-out's jobs exist only once it has):
    # without it, a resumed wait would never time out.
    if started and header.timeout is not None and header.deadline is None:
        raise ValueError("a started wait with a timeout but no deadline")


#: Version 1 named the pace's fields by the slots of the code of its day.
_V1_PACE_NAMES = {
    "index": "blind_index",
    "start": "started_at",
    "phase": "phase_started_at",
    "base_p": "phase_progress",
    "win_t": "window_at",
    "win_p": "window_progress",
    "mid_t": "middle_at",
    "mid_p": "middle_progress",
    "last_t": "last_at",
    "last_p": "last_progress",
    "seen_t": "value_seen_at",
    "before_t": "poll_before_at",
    "prev_t": "previous_at",
    "prev_p": "previous_progress",
    "first_t": "first_move_at",
    "first_p": "first_move_progress",
    "falls": "slower_moves",
    "fell_from": "slowing_from",
    "earlier": "move_before_pace",
}


def _upgrade_from_1(data: dict[str, Any]) -> dict[str, Any]:
    def renamed(state: object) -> object:
        if not isinstance(state, dict):
            return state
        state = {"answers": 0, **state}  # the one field of a job added since
        if isinstance(state.get("pace"), dict):
            pace = {_V1_PACE_NAMES.get(key, key): value for key, value in state["pace"].items()}
            state["pace"] = pace
        return state

    if "jobs" not in data:
        data = renamed(data)  # type: ignore[assignment]
    elif isinstance(data["jobs"], list):
        data = {**data, "jobs": [renamed(state) for state in data["jobs"]]}
    return {**data, "version": VERSION}


def _upgrade_from_2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 held a fan-out's window and pause, which the client's rate replaced."""
    if "jobs" in data:
        data = {k: v for k, v in data.items() if k not in ("window", "pause_until")}
        data["rate"] = None
    return {**data, "version": VERSION}


_T = TypeVar("_T")


def _plain(data: object) -> dict[str, Any]:
    # Any mapping will do: a checkpoint read back by a database driver or a queue may be one.
    if isinstance(data, Mapping) and not isinstance(data, dict):
        data = dict(data)
    if not isinstance(data, dict):
        raise CheckpointError(f"a checkpoint is a dict (JSON object), got {type(data).__name__}")
    version = data.get("version")
    if type(version) is int and version == 1:
        data = _upgrade_from_1(data)
    if type(version) is int and version in (1, 2):
        data = _upgrade_from_2(data)
    elif version != VERSION or type(version) is not int:
        raise CheckpointError(
            f"checkpoint version {version!r:.40} is not one this jobpoll reads"
            f" ({VERSION}, or 1 and 2 upgraded)"
        )
    return data


def _load(data: dict[str, Any], cls: type[_T], what: str) -> _T:
    try:
        return converter.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        problems = cattrs.transform_error(exc, path="checkpoint", format_exception=describe_problem)
        shown = "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
        raise CheckpointError(f"not a valid {what} checkpoint: {shown}") from None


def describe_problem(exc: BaseException, type_: type | None) -> str:
    """A problem `cattrs.transform_error` found, in the words of the check that found it."""
    if isinstance(exc, (ValueError, TypeError)) and str(exc):
        return str(exc)
    return cattrs.v.format_exception(exc, type_)


@checkpoint_errors("not a valid wait_for_jobs checkpoint")
def load_fanout(data: object) -> FanoutCheckpoint:
    """Read back a `JobsWait`'s checkpoint (its states' times still as saved: see
    `restore_state`), or raise `CheckpointError`."""
    if isinstance(data, Mapping) and "job_id" in data and "jobs" not in data:
        raise CheckpointError(
            "this is the checkpoint of one wait (JobWait.checkpoint()): resume it with wait_for_job"
        )
    checkpoint = _load(_plain(data), FanoutCheckpoint, "wait_for_jobs")
    for position, state in enumerate(checkpoint.jobs):
        _check_state(state)
        if state.pace is None:
            raise ValueError(f"jobs[{position}]: no pace")
    for position, job_id in enumerate(checkpoint.unstarted):
        try:
            check_job_id(job_id)
        except JobPollError as exc:
            raise ValueError(f"unstarted[{position}]: {exc}") from None
    seen = {state.job_id for state in checkpoint.jobs}
    if len(seen) < len(checkpoint.jobs) or seen.intersection(checkpoint.unstarted):
        raise ValueError("a job id appears twice")
    _check_clocks(checkpoint, started=bool(checkpoint.jobs))
    return checkpoint


@checkpoint_errors("the wait's checkpoint cannot be taken")
def job_checkpoint(rules: Rules, state: JobState, *, owed: bool = False) -> dict[str, Any]:
    """The checkpoint of one job's wait: `JobWait.checkpoint()`, and what each link of a
    wait in `jobpoll.saq` hands to the next."""
    base = Timebase(rules.policy)
    return dump(job_header(rules, base, owed=owed), saved_state(state, base))


def job_header(rules: Rules, base: Timebase, *, owed: bool = False) -> JobCheckpoint:
    """The header of one job's wait's checkpoint, taken at `base.taken_at`."""
    deadline = rules.deadline
    return JobCheckpoint(
        version=VERSION,
        taken_at=base.taken_at,
        timeout=rules.timeout,
        deadline=None if deadline is None else base.to_utc(deadline),
        owed=owed,
    )


@checkpoint_errors("not a valid wait_for_job checkpoint")
def resume_job(data: object, job_id: str, policy: PollPolicy) -> tuple[Rules, JobState, bool]:
    """The rules and the state of a job's wait from its checkpoint, on this process's clock,
    and whether its last snapshot is owed to the iteration; else a `CheckpointError`."""
    if isinstance(data, Mapping) and "jobs" in data and "job_id" not in data:
        raise CheckpointError(
            "this is the checkpoint of a fan-out (JobsWait.checkpoint()): resume it with"
            " wait_for_jobs"
        )
    data = _plain(data)
    if data.get("job_id") != job_id:
        raise CheckpointError(
            f"the checkpoint is of job {data.get('job_id')!r:.80}, not of {job_id!r:.80}"
        )
    header = _load(data, JobCheckpoint, "wait_for_job")
    state = _load(data, JobState, "wait_for_job")
    base = Timebase(policy, header.taken_at)
    return resumed(header, restore_state(state, base), base), state, header.owed


def resumed(header: JobCheckpoint, state: JobState, base: Timebase) -> Rules:
    """The rules of a job's wait read back from its checkpoint (its `header`, and its `state`
    on this process's clock, `base`), once the checks across fields pass."""
    _check_state(state)
    if header.owed and state.job is None:
        raise ValueError("owed: no snapshot is owed by a wait that has seen none")
    _check_clocks(header, started=state.pace is not None)
    deadline = None if header.deadline is None else base.from_utc(header.deadline)
    return Rules(base.policy, header.timeout, deadline)

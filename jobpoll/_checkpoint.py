"""Checkpoints: a wait's state as small, versioned JSON data, to resume it in another process.

A checkpoint is plain data (attrs classes below, turned into a JSON-ready dict by one cattrs
converter; never pickled): the ids, the last job seen in its wire form (through `_wire`, so
the wire format is written once), each wait's `Pace` (a handful of numbers), its failure and
poll counts, and its times.

Times inside a wait are on `policy.clock`, monotonic (or virtual in tests): they mean nothing
in another process. A checkpoint writes them against the wall clock (`policy.wall_clock`, UTC
seconds since the epoch) read once when it is taken (`taken_at`): the deadline and when the
next poll is due as absolute UTC times (ISO 8601), a pace's times in seconds before
`taken_at`. A resumed wait reads both clocks once and maps every time back by one offset; a
pace's schedule depends only on differences of its times, so it goes on exactly.

Reading one back is strict: a version this jobpoll does not know, another job's checkpoint, a
missing field or a value out of range (a negative count or one past 2**53, a time that is no
time, a pace time after the checkpoint was taken, a pace whose numbers contradict each other)
is a `CheckpointError` naming the field, never a silent restart. A next poll (or the fleet's
pause) due later than the policy's longest delay after `taken_at` is no time a wait of it could
have set: it is brought forward to that (`Timebase.due`), never a wait parked for centuries.
"""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar, get_origin

import attrs
import cattrs
from cattrs.cols import list_structure_factory
from cattrs.preconf.json import make_converter

from jobpoll._errors import CheckpointError, JobPollError
from jobpoll._ids import check_job_id, same_job_id
from jobpoll._models import MAX_PROGRESS, Job, job_from_wire, job_to_wire
from jobpoll._policy import Pace, PollPolicy, longest_delay
from jobpoll._wire import WireError, format_timestamp

__all__ = [
    "VERSION",
    "FanoutCheckpoint",
    "JobCheckpoint",
    "JobState",
    "PaceState",
    "Timebase",
    "checkpoint_errors",
    "dump",
    "load_fanout",
    "load_job",
    "load_pace",
    "restore_tracker",
    "save_pace",
    "save_tracker",
]

#: The version of the checkpoint format; a checkpoint of any other is refused.
VERSION = 1

#: Seconds a pace time may lie after `taken_at` (rounding), before it is nonsense.
_SLACK = 1e-3
#: The times a checkpoint holds lie between these. A deadline further away (a timeout of
#: thousands of years, a user's "forever") is saved as the latest: no wait can tell them apart.
_EARLIEST = datetime(1971, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)
#: More than any wait counts (of polls, failures, ...): a larger count is no count of one.
_MOST = 2**53


def _count(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= _MOST:
        raise ValueError(f"{attribute.name} must be from 0 to 2**53, got {value!r:.40}")


def _progress(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    # -1 is a pace's "not yet" for the progress values it keeps.
    if not -1 <= value <= MAX_PROGRESS:
        raise ValueError(f"{attribute.name} must be a percent from -1 to 100, got {value!r}")


def _past(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value > _SLACK:
        raise ValueError(f"{attribute.name} lies after the checkpoint was taken ({value!r} s)")


def _rate(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be 0 or more, got {value!r}")


@contextlib.contextmanager
def checkpoint_errors(what: str) -> Iterator[None]:
    """Around taking or restoring a checkpoint (also as a decorator): a value it cannot hold
    is a `CheckpointError` saying `what` failed, never a plain `ValueError`, `TypeError` or
    `OverflowError` (a worker writing its checkpoint in `finally` must meet a jobpoll error,
    and `jobpoll.saq` must end the wait with it, not lose it)."""
    try:
        yield
    except JobPollError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise CheckpointError(f"{what}: {exc}") from exc


def _job_id(_instance: object, _attribute: attrs.Attribute[str], value: str) -> None:
    try:
        check_job_id(value)
    except JobPollError as exc:
        raise ValueError(str(exc)) from None


def _timeout(
    _instance: object, _attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {value!r}")


@attrs.frozen
class PaceState:
    """A `Pace`'s numbers: each slot by its name without the underscore. Times (`start`,
    `phase` and the names ending in `_t`) are seconds relative to the checkpoint's
    `taken_at`, so 0 or less."""

    index: int = attrs.field(validator=_count)
    status: str | None
    start: float = attrs.field(validator=_past)
    phase: float = attrs.field(validator=_past)
    base_p: int = attrs.field(validator=_progress)
    win_t: float = attrs.field(validator=_past)
    win_p: int = attrs.field(validator=_progress)
    mid_t: float = attrs.field(validator=_past)
    mid_p: int = attrs.field(validator=_progress)
    last_t: float = attrs.field(validator=_past)
    last_p: int = attrs.field(validator=_progress)
    seen_t: float = attrs.field(validator=_past)
    before_t: float = attrs.field(validator=_past)
    prev_t: float = attrs.field(validator=_past)
    prev_p: int = attrs.field(validator=_progress)
    first_t: float = attrs.field(validator=_past)
    first_p: int = attrs.field(validator=_progress)
    falls: int = attrs.field(validator=_count)
    fell_from: float = attrs.field(validator=_rate)
    earlier: float = attrs.field(validator=_rate)
    step: int = attrs.field(validator=_progress)

    def __attrs_post_init__(self) -> None:
        # Once progress has moved in its status (`mid_p` set), a pace's schedule divides by
        # its step and by its paces: what its own updates keep true must hold, or the next
        # answer would raise a ZeroDivisionError or a math domain error, not this.
        if self.mid_p < 0:
            self._check_unmoved()
            return
        if self.step < 1:
            raise ValueError(f"step must be 1 or more once progress moved, got {self.step}")
        if not (
            self.base_p < self.first_p <= self.win_p <= self.mid_p <= self.last_p
            and self.first_p <= self.prev_p <= self.last_p
            and (self.prev_p < self.last_p or self.prev_t >= self.seen_t)
            and (self.first_p < self.last_p or self.first_t >= self.seen_t)
        ):
            raise ValueError("pace: its progress values contradict each other")
        if not (
            self.start <= self.phase <= self.first_t <= self.win_t <= self.mid_t
            and self.first_t <= self.prev_t
            and max(self.mid_t, self.prev_t, self.before_t) <= self.seen_t <= self.last_t
        ):
            raise ValueError("pace: its times contradict each other")

    def _check_unmoved(self) -> None:
        # Progress has not moved in its status: the last reading is the status's first (a
        # move from below it would divide by a step of 0, or a pace below 0).
        if self.status is not None and not 0 <= self.base_p == self.last_p:
            raise ValueError("pace: its progress values contradict each other")


#: The slots of a `Pace` that hold times on the policy's clock.
_PACE_TIMES = frozenset(
    {"start", "phase", "win_t", "mid_t", "last_t", "seen_t", "before_t", "prev_t", "first_t"}
)
_PACE_FIELDS = tuple(a.name for a in attrs.fields(PaceState))
#: A pace's numbers in the order of `PaceState`'s fields, in one call; which are times.
_read_pace = operator.attrgetter(*("_" + name for name in _PACE_FIELDS))
_IS_TIME = tuple(name in _PACE_TIMES for name in _PACE_FIELDS)


@attrs.frozen(kw_only=True)
class JobState:
    """What one wait knows of its job: the `Tracker`'s state. `started_at` and `changed_at`
    are seconds relative to `taken_at`; `pace` is None for a wait not started."""

    job_id: str = attrs.field(validator=_job_id)
    polls: int = attrs.field(validator=_count)
    failures: int = attrs.field(validator=_count)
    job: Job | None
    started_at: float = attrs.field(validator=_past)
    changed_at: float = attrs.field(validator=_past)
    next_poll_at: datetime | None
    pace: PaceState | None

    def __attrs_post_init__(self) -> None:
        if self.job is not None and not same_job_id(self.job_id, self.job.id):
            raise ValueError(f"job: the job seen is {self.job.id!r}, not {self.job_id!r}")
        if self.pace is None and (self.polls or self.job is not None):
            raise ValueError("pace: missing for a wait that has polled")


@attrs.frozen(kw_only=True)
class JobCheckpoint(JobState):
    """The checkpoint of one `JobWait`: its job's state, flat, and the wait's clocks.

    `owed` is True when the iteration is owed `job` (its async `on_update` was cancelled
    before the snapshot was handed out): a resumed wait yields it first.
    """

    version: int
    taken_at: datetime
    timeout: float | None = attrs.field(validator=_timeout)
    deadline: datetime | None
    owed: bool = False

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.owed and self.job is None:
            raise ValueError("owed: no snapshot is owed by a wait that has seen none")


@attrs.frozen(kw_only=True)
class FanoutCheckpoint:
    """The checkpoint of a `JobsWait`: every job still pending, and the fan-out's clocks.

    `jobs` are the jobs taken in and not reported (those ready but not handed out
    included); `unstarted` the ids added but not taken in yet; `window` and `pause_until`
    the fleet's state (how many polls may be in flight, and until when all pause).
    """

    version: int
    taken_at: datetime
    timeout: float | None = attrs.field(validator=_timeout)
    deadline: datetime | None
    polls: int = attrs.field(validator=_count)
    window: int = attrs.field(validator=_count)
    pause_until: datetime | None
    jobs: list[JobState]
    unstarted: list[str]

    def __attrs_post_init__(self) -> None:
        for position, job_id in enumerate(self.unstarted):
            try:
                check_job_id(job_id)
            except JobPollError as exc:
                raise ValueError(f"unstarted[{position}]: {exc}") from None


# The converter: strict about every primitive (cattrs alone turns "5" and 5.7 into 5),
# jobs through the wire format's own converter, times as ISO 8601 UTC with a `Z`.


def _structure_int(value: object, _type: object) -> int:
    if type(value) is not int:
        raise TypeError(f"expected a whole number, got {type(value).__name__}")
    return value


def _structure_float(value: object, _type: object) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        raise TypeError(f"expected a finite number, got {value!r:.40}")
    return float(value)  # type: ignore[arg-type]


def _structure_bool(value: object, _type: object) -> bool:
    if type(value) is not bool:
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


def _structure_str(value: object, _type: object) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _structure_time(value: object, _type: object) -> datetime:
    if type(value) is not str:
        raise TypeError(f"expected an ISO 8601 UTC time, got {type(value).__name__}")
    moment = datetime.fromisoformat(value)  # a ValueError says what is wrong
    if moment.tzinfo is None:
        raise ValueError(f"expected a time with its offset (Z), got {value!r:.40}")
    if not _EARLIEST <= moment <= _LATEST:
        raise ValueError(f"a time out of any wait's reach: {value!r:.40}")
    return moment


def _structure_job(value: object, _type: object) -> Job:
    try:
        return job_from_wire(value)  # type: ignore[arg-type]
    except WireError as exc:
        raise ValueError(str(exc)) from None


def _optional(hook: Callable[[object, object], Any]) -> Callable[[object, object], Any]:
    def structure(value: object, type_: object) -> Any:
        return None if value is None else hook(value, type_)

    return structure


def _make_converter() -> cattrs.Converter:
    converter = make_converter(detailed_validation=True, forbid_extra_keys=False)
    for type_, hook in (
        (int, _structure_int),
        (float, _structure_float),
        (str, _structure_str),
        (bool, _structure_bool),
        (datetime, _structure_time),
        (Job, _structure_job),
    ):
        converter.register_structure_hook(type_, hook)
        converter.register_structure_hook(type_ | None, _optional(hook))
    converter.register_unstructure_hook(datetime, format_timestamp)
    converter.register_unstructure_hook(Job, job_to_wire)

    def strict_list(type_: Any) -> Callable[[Any, Any], Any]:
        items = list_structure_factory(type_, converter)

        def structure(value: object, type_: object) -> Any:
            if type(value) is not list:  # cattrs alone takes a string for a list of letters
                raise TypeError(f"expected a list, got {type(value).__name__}")
            return items(value, type_)

        return structure

    def is_list(type_: Any) -> bool:
        return get_origin(type_) is list

    converter.register_structure_hook_factory(is_list, strict_list)
    return converter


_converter = _make_converter()


def dump(checkpoint: JobCheckpoint | FanoutCheckpoint) -> dict[str, Any]:
    """The checkpoint as a JSON-ready dict."""
    data: dict[str, Any] = _converter.unstructure(checkpoint)
    return {"version": data.pop("version"), **data}  # first, where a reader looks


_T = TypeVar("_T")


def _plain(data: object) -> object:
    # Any mapping will do (a checkpoint read back by a database driver or a queue may come as
    # one); the converter and the checks below read a dict.
    return dict(data) if isinstance(data, Mapping) and not isinstance(data, dict) else data


def _load(data: object, cls: type[_T], what: str) -> _T:
    if not isinstance(data, dict):
        raise CheckpointError(f"a checkpoint is a dict (JSON object), got {type(data).__name__}")
    version = data.get("version")
    if version != VERSION:
        raise CheckpointError(
            f"checkpoint version {version!r:.40} is not one this jobpoll reads ({VERSION})"
        )
    try:
        return _converter.structure(data, cls)
    except cattrs.BaseValidationError as exc:
        problems = cattrs.transform_error(exc, path="checkpoint", format_exception=_describe)
        shown = "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
        raise CheckpointError(f"not a valid {what} checkpoint: {shown}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a check across fields
        raise CheckpointError(f"not a valid {what} checkpoint: {exc}") from None


def _describe(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, (ValueError, TypeError)) and str(exc):
        return str(exc)
    return cattrs.v.format_exception(exc, type_)


def load_job(data: object, job_id: str) -> JobCheckpoint:
    """Read back a `JobWait`'s checkpoint for `job_id`, or raise `CheckpointError`."""
    data = _plain(data)
    if isinstance(data, dict) and "jobs" in data and "job_id" not in data:
        raise CheckpointError(
            "this is the checkpoint of a fan-out (JobsWait.checkpoint()): resume it with"
            " wait_for_jobs"
        )
    if isinstance(data, dict) and data.get("version") == VERSION and data.get("job_id") != job_id:
        raise CheckpointError(
            f"the checkpoint is of job {data.get('job_id')!r:.80}, not of {job_id!r:.80}"
        )
    checkpoint = _load(data, JobCheckpoint, "wait_for_job")  # of this job: checked above
    _check_clocks(checkpoint.timeout, checkpoint.deadline, started=checkpoint.pace is not None)
    return checkpoint


def load_fanout(data: object) -> FanoutCheckpoint:
    """Read back a `JobsWait`'s checkpoint, or raise `CheckpointError`."""
    data = _plain(data)
    if isinstance(data, dict) and "job_id" in data and "jobs" not in data:
        raise CheckpointError(
            "this is the checkpoint of one wait (JobWait.checkpoint()): resume it with wait_for_job"
        )
    checkpoint = _load(data, FanoutCheckpoint, "wait_for_jobs")
    _check_clocks(checkpoint.timeout, checkpoint.deadline, started=bool(checkpoint.jobs))
    seen: set[str] = set()
    for position, state in enumerate(checkpoint.jobs):
        if state.pace is None:
            raise CheckpointError(
                f"not a valid wait_for_jobs checkpoint: jobs[{position}]: no pace"
            )
        seen.add(state.job_id)
    if len(seen) < len(checkpoint.jobs) or seen.intersection(checkpoint.unstarted):
        raise CheckpointError("not a valid wait_for_jobs checkpoint: a job id appears twice")
    return checkpoint


def _check_clocks(timeout: float | None, deadline: datetime | None, *, started: bool) -> None:
    if deadline is not None and timeout is None:
        raise CheckpointError("not a valid checkpoint: a deadline without a timeout")
    # A wait's deadline is set when it starts (a fan-out's jobs exist only once it has):
    # without it, a resumed wait would never time out.
    if started and timeout is not None and deadline is None:
        raise CheckpointError(
            "not a valid checkpoint: a started wait with a timeout but no deadline"
        )


class Timebase:
    """The offset between a policy's clock and the UTC wall clock, read once.

    Taking a checkpoint, `now` is the policy's clock and `taken_at` the wall clock at the
    same moment; resuming one, `now` is read in the new process and `taken_at` is the
    checkpoint's, so a time `t` of the old clock is `now + (wall(t) - wall_now)` there.
    """

    __slots__ = ("now", "taken_at", "wall_now")

    def __init__(self, policy: PollPolicy, taken_at: datetime | None = None) -> None:
        self.now = policy.clock()
        self.wall_now = policy.wall_clock()
        if taken_at is None:
            self.taken_at = datetime.fromtimestamp(self.wall_now, UTC)
        else:
            # A wall clock behind the checkpoint's (another machine's, set back) counts as no
            # time passed since: time on a wait's clock never goes back.
            self.taken_at = taken_at
            self.wall_now = max(self.wall_now, taken_at.timestamp())

    def to_utc(self, moment: float) -> datetime:
        """A time of this process's clock as UTC, from `_EARLIEST` to `_LATEST` (a
        deadline long passed is as passed at either)."""
        seconds = self.wall_now + (moment - self.now)
        return datetime.fromtimestamp(
            min(max(seconds, _EARLIEST.timestamp()), _LATEST.timestamp()), UTC
        )

    def from_utc(self, moment: datetime) -> float:
        """A UTC time on this process's clock."""
        return self.now + (moment.timestamp() - self.wall_now)

    def due(self, moment: datetime, policy: PollPolicy) -> float:
        """When a saved poll (or pause) is due, on this process's clock: at most `policy`'s
        longest delay after `taken_at`, the latest a wait of it could have set (a later
        time, tampered with, would park the wait for ever; one of a longer policy's comes
        sooner)."""
        return min(self.from_utc(moment), self.from_utc(self.taken_at) + longest_delay(policy))

    def relative(self, moment: float) -> float:
        """A time of this process's clock as seconds after `taken_at` (rounded to 1 µs), 0
        at most: a time not set yet (0.0) lies ahead of a clock that reads below 0."""
        return min(round(moment - self.now, 6), 0.0)


def save_pace(pace: Pace, base: Timebase) -> PaceState:
    """A `Pace`'s numbers, its times made relative to the checkpoint's `taken_at`."""
    now = base.now
    return PaceState(
        *[
            min(round(value - now, 6), 0.0) if is_time else value  # as `Timebase.relative`
            for value, is_time in zip(_read_pace(pace), _IS_TIME, strict=True)
        ]
    )


def load_pace(state: PaceState, policy: PollPolicy, base: Timebase) -> Pace:
    """A `Pace` of `policy` holding a checkpoint's numbers, its times on this process's
    clock: shifted by one offset, so its schedule (which uses differences) is the same."""
    pace = policy.pace()
    origin = base.from_utc(base.taken_at)
    for name in _PACE_FIELDS:
        value = getattr(state, name)
        setattr(pace, "_" + name, origin + value if name in _PACE_TIMES else value)
    return pace


def save_tracker(tracker: Any, base: Timebase, next_poll_at: float | None) -> dict[str, Any]:
    """The fields of a `JobState` for a `Tracker` (a dict, so a checkpoint class can add its
    own)."""
    pace = tracker._pace
    return {
        "job_id": tracker._job_id,
        "polls": tracker._polls,
        "failures": tracker._failures,
        "job": tracker._job,
        "started_at": base.relative(tracker._started_at),
        "changed_at": base.relative(tracker._changed_at),
        "next_poll_at": None if next_poll_at is None else base.to_utc(next_poll_at),
        "pace": None if pace is None else save_pace(pace, base),
    }


def restore_tracker(tracker: Any, state: JobState, base: Timebase) -> float | None:
    """Put a `JobState` back into a `Tracker`, without polling; returns when the next poll
    is due on this process's clock (None: at once, or never for a wait not started)."""
    origin = base.from_utc(base.taken_at)
    tracker._polls = state.polls
    tracker._failures = state.failures
    tracker._job = state.job
    tracker._started_at = origin + state.started_at
    tracker._changed_at = origin + state.changed_at
    if state.pace is not None:
        tracker._pace = load_pace(state.pace, tracker._policy, base)
    return None if state.next_poll_at is None else base.due(state.next_poll_at, tracker._policy)

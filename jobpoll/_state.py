"""What a wait knows, declared once: `JobState` and its schedule's `PaceState` for each job,
and `RateState`, what a client learned of the service's rate limit.

The fan-out's rows (`_rows`) and the checkpoint (`_saved`) are derived from these fields and
their metadata: `time` ("past": saved as seconds before the checkpoint; "utc": as a UTC time),
`min` and `max` (checked when a record is made, not each time a rule sets a field), `saved`
(False: a checkpoint leaves it out) and `added` (True: a checkpoint may lack it, written
before it was, and stands for its default).
"""

from __future__ import annotations

from typing import Any, get_args

import attrs

from jobpoll._errors import JobPollError
from jobpoll._models import MAX_PROGRESS, Job


def _within_bounds(_record: object, attribute: attrs.Attribute[Any], value: float) -> None:
    low, high = attribute.metadata.get("min"), attribute.metadata.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise ValueError(f"{attribute.name} must be {span}, got {value!r:.40}")


#: More than any wait counts (of polls, failures, ...): a larger count is no count of one.
_MOST = 2**53


def _count(**metadata: Any) -> Any:
    bounds = {"min": 0, "max": _MOST, **metadata}
    return attrs.field(default=0, metadata=bounds, validator=_within_bounds)


def _percent(default: int) -> Any:
    # -1: "not yet", for a pace's progress values.
    return attrs.field(
        default=default, metadata={"min": -1, "max": MAX_PROGRESS}, validator=_within_bounds
    )


def _rate() -> Any:
    return attrs.field(default=0.0, metadata={"min": 0}, validator=_within_bounds)


def _time() -> Any:
    return attrs.field(default=0.0, metadata={"time": "past"})


def record_type(attribute: attrs.Attribute[Any]) -> type | None:
    """The record a field holds (`PaceState` of `PaceState | None`), or None."""
    for type_ in get_args(attribute.type) or (attribute.type,):
        if attrs.has(type_):
            return type_
    return None


@attrs.define(slots=True, kw_only=True, on_setattr=attrs.setters.NO_OP)
class PaceState:
    """Where one wait stands in its policy's schedule (see `PollPolicy` for the model).

    The phase is the time since the job's current status was first seen; a move is a
    reading whose progress is above the one before; a value is "seen" at the poll that
    first read it.
    """

    blind_index: int = _count()  # the next delay of the blind schedule: an index
    status: str | None = None  # the status the phase is in; None until the first answer
    started_at: float = _time()  # the first answer: the job's age counts from it
    phase_started_at: float = _time()
    phase_progress: int = _percent(0)  # the phase's first reading
    # The rate window, from `window_*` to the last reading; `middle_*` splits it and becomes
    # its start once the newer half is as long as the older: about the last half of the moves.
    window_at: float = _time()
    window_progress: int = _percent(0)
    middle_at: float = _time()
    middle_progress: int = _percent(-1)  # -1: progress has not moved in this phase
    last_at: float = _time()  # the last reading
    last_progress: int = _percent(-1)
    value_seen_at: float = _time()  # when the last reading's value was first seen
    poll_before_at: float = _time()  # the poll before that: progress was below it then
    previous_at: float = _time()  # the value before the last one, when first seen
    previous_progress: int = _percent(0)
    first_move_at: float = _time()  # the first value progress moved to in the phase
    first_move_progress: int = _percent(0)
    slower_moves: int = _count()  # moves in a row slower than the one before (no pause)
    slowing_from: float = _rate()  # the pace, in % a second, the slowing started from
    move_before_pace: float = _rate()  # the pace of the move before the last
    step: int = _percent(0)  # the steps progress moves in: the gcd of the readings
    jumps: int = _count(max=100, added=True)  # moves of the phase that were jumps


@attrs.define(slots=True, kw_only=True, on_setattr=attrs.setters.NO_OP)
class JobState:
    """What one wait knows of its job: the counts, the times and the schedule."""

    job_id: str
    job: Job | None = None  # the last snapshot, None before any answer
    failures: int = _count()  # failed polls in a row
    polls: int = _count()  # requests sent, failed ones included
    answers: int = _count()  # polls answered with the job (the others failed)
    started_at: float = _time()  # the first poll
    changed_at: float = _time()  # when the job was last seen changing (status or progress)
    next_poll_at: float | None = attrs.field(default=None, metadata={"time": "utc"})
    #: The last failed poll's error, the cause of a `WaitTimeout`: not worth a checkpoint.
    last_error: JobPollError | None = attrs.field(default=None, metadata={"saved": False})
    pace: PaceState | None = None  # None until the wait starts


#: The slowest a client's rate goes: a request every 5 s. Through an outage (nothing
#: accepted) the client keeps probing at this pace, and sees the end of it within 5 s.
MIN_RATE = 0.2


def _requests_per_second() -> Any:
    return attrs.field(
        default=None,
        metadata={"min": MIN_RATE},
        validator=attrs.validators.optional(_within_bounds),
    )


@attrs.define(slots=True, kw_only=True)
class RateState:
    """What a client learned of the rate the service accepts (see `_rate` for the rules).

    `rate` is the rate requests were held to right after the last cut (None: not held to
    any, nothing throttled and no ceiling); from there it grows back towards `peak`, the
    rate the service was measured to accept when it last throttled (None: not measured).
    """

    rate: float | None = _requests_per_second()
    peak: float | None = _requests_per_second()
    cut_at: float = _time()  # when the rate was last cut: it grows back from then


attrs.resolve_types(PaceState)
attrs.resolve_types(JobState)
attrs.resolve_types(RateState)

"""A job's state as checkpoint data, and back: one cattrs converter over the records of
`_state` (never pickled), and one rule over the fields they mark as times.

Times on `policy.clock` mean nothing in another process: a checkpoint holds them relative
to `taken_at` or as UTC, and a resumed wait maps them back by one offset (`Timebase`). A
pace's schedule depends only on differences of its times, so it goes on exactly.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, get_origin

import attrs
import cattrs
from cattrs.cols import list_structure_factory
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter

from jobpoll._models import Job, job_from_wire, job_to_wire
from jobpoll._pace import longest_delay
from jobpoll._state import JobState, PaceState, RateState, record_type
from jobpoll._wire import WireError, format_timestamp

if TYPE_CHECKING:
    from jobpoll._policy import PollPolicy

#: The times a checkpoint holds lie between these. A deadline further away (a timeout of
#: thousands of years, a user's "forever") is saved as the latest: no wait can tell them apart.
EARLIEST = datetime(1971, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
#: How far a checkpoint's `taken_at` may lie ahead of this machine's wall clock and still be
#: read as taken just now: a day, more than any clock that is merely off (a wrong time zone
#: is at most 14 hours); further ahead, it was typed wrong and its times mean nothing.
MAX_LEAD = 86400.0


class Timebase:
    """The offset between a policy's clock and the UTC wall clock, read once: taking a
    checkpoint, or resuming one (a time `t` of the old clock is `now + (wall(t) - wall_now)`
    in the new process)."""

    def __init__(self, policy: PollPolicy, taken_at: datetime | None = None) -> None:
        self.policy = policy
        self.now = policy.clock()
        self.wall_now = policy.wall_clock()
        if taken_at is None:
            self.taken_at = datetime.fromtimestamp(self.wall_now, UTC)
        else:
            lead = taken_at.timestamp() - self.wall_now
            if lead > MAX_LEAD:
                raise ValueError(
                    f"taken_at {taken_at:%Y-%m-%dT%H:%M:%SZ} lies {lead:.0f} s ahead of this"
                    f" machine's clock, more than the {MAX_LEAD:.0f} s a clock may be off"
                )
            # A wall clock behind the checkpoint's counts as no time passed since: time on a
            # wait's clock never goes back, and the deadline is as far as when it was taken.
            self.taken_at = taken_at
            self.wall_now = max(self.wall_now, taken_at.timestamp())
        #: `taken_at` on this process's clock: a time saved relative to it is this plus it.
        self.origin = self.from_utc(self.taken_at)
        #: The latest a saved poll (or pause) may be due, the latest a wait of the policy
        #: could have set: a later one, tampered with, would park the wait for ever.
        self.latest_due = self.origin + longest_delay(policy)

    def to_utc(self, moment: float) -> datetime:
        """A time of this process's clock as UTC, clamped to `EARLIEST`..`LATEST`."""
        seconds = self.wall_now + (moment - self.now)
        return datetime.fromtimestamp(
            min(max(seconds, EARLIEST.timestamp()), LATEST.timestamp()), UTC
        )

    def from_utc(self, moment: datetime) -> float:
        return self.now + (moment.timestamp() - self.wall_now)

    def due(self, seconds: float) -> float:
        """When a saved poll (or pause), in epoch seconds, is due on this process's clock."""
        return min(self.now + (seconds - self.wall_now), self.latest_due)

    def relative(self, moment: float) -> float:
        """A time of this process's clock as seconds after `taken_at` (rounded to 1 µs), 0
        at most: a time not set yet (0.0) lies ahead of a clock that reads below 0."""
        return min(round(moment - self.now, 6), 0.0)

    def restored(self, name: str, kind: str, value: float) -> float:
        """A record's saved time `name` on this process's clock: a "utc" one (epoch seconds)
        as `due`, a "past" one (seconds after `taken_at`, which a time after the checkpoint
        was taken, a millisecond of rounding aside, is nonsense) from `origin`."""
        if kind == "utc":
            return self.due(value)
        if value > 1e-3:
            raise ValueError(f"{name} lies after the checkpoint was taken ({value!r} s)")
        return self.origin + value


# The converter: strict about every primitive (cattrs alone turns "5" and 5.7 into 5), jobs
# in their wire form, times as ISO 8601 UTC with a `Z`.


def _exactly(type_: type, expected: str) -> Callable[[object, object], Any]:
    def structure(value: object, _type: object) -> Any:
        if type(value) is not type_:
            raise TypeError(f"expected {expected}, got {type(value).__name__}")
        return value

    return structure


def _structure_float(value: object, _type: object) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):  # type: ignore[arg-type]
        raise TypeError(f"expected a finite number, got {value!r:.40}")
    return float(value)  # type: ignore[arg-type]


def within_reach(moment: datetime, written: object) -> datetime:
    """A time a checkpoint holds (`written` so), if it lies between `EARLIEST` and `LATEST`."""
    if not EARLIEST <= moment <= LATEST:
        raise ValueError(f"a time out of any wait's reach: {written!r:.40}")
    return moment


def _structure_time(value: object, _type: object) -> datetime:
    if type(value) is not str:
        raise TypeError(f"expected an ISO 8601 UTC time, got {type(value).__name__}")
    moment = datetime.fromisoformat(value)  # a ValueError says what is wrong
    if moment.tzinfo is None:
        raise ValueError(f"expected a time with its offset (Z), got {value!r:.40}")
    return within_reach(moment, value)


def _structure_epoch(value: object, type_: object) -> float:
    # A record's "utc" time, in epoch seconds until `restore_state` moves it.
    return _structure_time(value, type_).timestamp()


def _structure_job(value: object, _type: object) -> Job:
    try:
        return job_from_wire(value)  # type: ignore[arg-type]
    except WireError as exc:
        raise ValueError(str(exc)) from None


def _optional(hook: Callable[[object, object], Any]) -> Callable[[object, object], Any]:
    def structure(value: object, type_: object) -> Any:
        return None if value is None else hook(value, type_)

    return structure


def _register_state_hooks(converter: cattrs.Converter) -> None:
    """The records of `_state`, by their field metadata: what is not saved is left out, a
    "utc" time is read from its ISO form, and every field saved must be there (but one
    added since, which a checkpoint written before it stands for by its default)."""

    def unsaved(cls: Any) -> dict[str, Any]:
        fields = attrs.fields(cls)
        return {f.name: override(omit=True) for f in fields if not f.metadata.get("saved", True)}

    def structure_state(cls: Any) -> Any:
        omitted = unsaved(cls)
        fields = attrs.fields(cls)
        saved = [f.name for f in fields if f.name not in omitted and not f.metadata.get("added")]
        utc = override(struct_hook=_optional(_structure_epoch))
        times = {f.name: utc for f in fields if f.metadata.get("time") == "utc"}
        structure = make_dict_structure_fn(cls, converter, **omitted, **times)  # type: ignore[arg-type]

        def required(value: Any, type_: Any) -> Any:
            # Every field saved must be there: a default would be a silent restart. A value
            # that is no object at all would be read as one with every field missing.
            if not isinstance(value, dict):
                raise TypeError(f"an object was expected, not {type(value).__name__}")
            missing = [name for name in saved if name not in value]
            if missing:
                raise ValueError(f"{', '.join(missing)}: missing")
            return structure(value, type_)

        return required

    def unstructure_state(cls: Any) -> Any:
        return make_dict_unstructure_fn(cls, converter, **unsaved(cls))

    def is_state(type_: Any) -> bool:
        return type_ in (JobState, PaceState, RateState)

    converter.register_structure_hook_factory(is_state, structure_state)
    converter.register_unstructure_hook_factory(is_state, unstructure_state)


def _make_converter() -> cattrs.Converter:
    converter = make_converter(detailed_validation=True, forbid_extra_keys=False)
    for type_, hook in (
        (int, _exactly(int, "a whole number")),
        (float, _structure_float),
        (str, _exactly(str, "a string")),
        (bool, _exactly(bool, "true or false")),
        (datetime, _structure_time),
        (Job, _structure_job),
    ):
        converter.register_structure_hook(type_, hook)
    converter.register_unstructure_hook(datetime, format_timestamp)
    converter.register_unstructure_hook(Job, job_to_wire)

    _register_state_hooks(converter)

    def strict_list(type_: Any) -> Callable[[Any, Any], Any]:
        items = list_structure_factory(type_, converter)
        is_list = _exactly(list, "a list")  # cattrs alone takes a string for a list of letters
        return lambda value, type_: items(is_list(value, type_), type_)

    def is_list(type_: Any) -> bool:
        return get_origin(type_) is list

    converter.register_structure_hook_factory(is_list, strict_list)
    return converter


converter = _make_converter()


# The one rule over the fields marked as times, both ways.


@functools.cache
def _timed(cls: type) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, type], ...]]:
    """A record class's fields marked as times (name, kind), and those holding a record."""
    times = tuple((f.name, kind) for f in attrs.fields(cls) if (kind := f.metadata.get("time")))
    records = tuple((f.name, r) for f in attrs.fields(cls) if (r := record_type(f)) is not None)
    return times, records


def _move_times(cls: type, record: Any, move: Callable[[str, str, Any], Any]) -> None:
    """Replace each time `t` of a record of `cls` (or of its data, a dict), and of the records
    it holds, by `move(name, kind, t)`; a time not set (None) stays None."""
    if isinstance(record, dict):
        get, put = record.get, record.__setitem__
    else:
        get, put = functools.partial(getattr, record), functools.partial(setattr, record)
    times, records = _timed(cls)
    for name, kind in times:
        if (value := get(name)) is not None:
            put(name, move(name, kind, value))
    for name, inner_cls in records:
        if (inner := get(name)) is not None:
            _move_times(inner_cls, inner, move)


_Record = TypeVar("_Record", JobState, RateState)


def saved_state(state: JobState | RateState, base: Timebase) -> dict[str, Any]:
    """A record of `_state` (a job's, or a client's rate) as checkpoint data, its times moved
    by the rule."""

    def saved(_name: str, kind: str, moment: float) -> float | str:
        return base.relative(moment) if kind == "past" else format_timestamp(base.to_utc(moment))

    data: dict[str, Any] = converter.unstructure(state)
    _move_times(type(state), data, saved)
    return data


def restore_state(state: _Record, base: Timebase) -> _Record:
    """A record read from a checkpoint, its times moved onto this process's clock
    (`Timebase.restored`)."""
    _move_times(type(state), state, base.restored)
    return state

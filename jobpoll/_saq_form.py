"""The form in which a SAQ wait's records keep its checkpoint between polls (`_saq_links.Kept`):
`job_checkpoint`'s values, less their names and less what the declarations already say. Redis
holds one per waiting job, so each byte is paid per waiting job: in the keyed form this one
replaced, a wait polled five times with its job's progress moving kept 701 bytes of JSON and
weighed 1,191 bytes of Redis, over the 800 `benchmarks/bench_queue.py` targets; in this one,
307 bytes of JSON, 742 of Redis (Redis rounds a string up to its allocator's size classes:
315 to 378 bytes of JSON would weigh 64 more; `tests/test_saq_cost.py` keeps it under).

The form is a list of two lists: the header's values (`JobCheckpoint`), then the wait's
(`JobState`), `pace` in it a list of `PaceState`'s values; each list holds its class's saved
fields in declared order (`attrs.fields`, so a field added there is carried with no change
here; it is added at the end, where a form written before it stands for its default: the order
is pinned in `tests/test_saq_form.py`). One rule writes each value (`link_checkpoint`), one
reads it back (`resume_link`), each by the same slots (`_slots`):

- a value is as the whole checkpoint saves it (a number, a string or a bool as it is, the job
  seen in its wire form), but for the times:
  each is whole microseconds, `taken_at` after the Unix epoch, any other ("utc": an ISO time in
  the whole checkpoint, or "past": seconds before `taken_at`) after `taken_at`, each taken and
  moved back by `Timebase` as the whole checkpoint's are; a past time not set (0.0) is null;
- the values at their defaults at a list's end are left out (as declared, else None: the
  header's `timeout` and `deadline` unset): before progress moves, most of a pace;
- the job id is the link's own: not in the state, nor in the job seen when it spells it so.
  The job seen is otherwise as the service wrote it.

After five polls, with a timeout of an hour (322 bytes; its whole checkpoint, 942, is in
`tests/test_saq_form.py`)::

    [[3,1796662553000000,3600.0,3599692886],[{"createdAt":"2026-12-07T16:55:52Z",
     "user":"742429-234242-4343-232323","progress":28,"status":"RUNNING"},0,5,5,-307115,
     -260972,36870944,[1,"RUNNING",-299242,-299242,0,-270325,14,-263810,21,-260972,28,
     -260972,-263810,-263810,21,-275235,7,0,1425.6641740312712,1074.4392885896216,7]]]

The form is read straight into the records, by the same rules as a whole checkpoint (the
converter's hooks for each value, the records' own bounds, `resumed`'s checks across fields:
anything else is a `CheckpointError` naming the field), but that a list cut short stands for
the defaults of the fields left out, and values past the last field are not read. Straight,
not by way of the whole checkpoint, because a worker reads one and writes one per poll, and
its CPU per poll is measured against a bare SAQ job's (`benchmarks/bench_queue.py`): by way
of the whole checkpoint (its times written as ISO text and parsed again), writing and reading
one took 75 µs, straight 42 µs (`tests/test_saq_form.py` pins that both give the same wait).

The forms written before this one are read too, by way of the whole checkpoint
(`checkpoint_of`): the keyed form (a dict: the whole checkpoint less the job id and the fields
at their defaults), which a link of the previous version carries as its `saved` argument, and
the whole checkpoint, its `job_id` in it, which the oldest carry as `checkpoint` (`carried`).
A link runs from either as it is, and hands on this form.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from jobpoll._checkpoint import (
    VERSION,
    JobCheckpoint,
    checkpoint_errors,
    job_header,
    resume_job,
    resumed,
)
from jobpoll._errors import ConfigurationError
from jobpoll._models import Job
from jobpoll._policy import PollPolicy
from jobpoll._rules import Rules
from jobpoll._saved import Timebase, converter, within_reach
from jobpoll._state import JobState, PaceState, record_type

#: The records a checkpoint holds in their saved form (`_saved`); a `Job` is in its wire form.
_RECORDS = (JobState, PaceState)

#: The fields the link's own job id stands for.
_LINKS_OWN = frozenset({"job_id"})

#: The time the form's other times count from, itself counted from the Unix epoch.
_BASE = "taken_at"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
#: What reads back a checkpoint that is no links' form: `resume_job`'s error, in its words.
_WHAT = "not a valid wait_for_job checkpoint"


#: How a slot's value is written and read: as it is (through the converter's hook), a "past"
#: time, a "utc" time, a record of `_state`, or the job seen (the converter's form).
_PLAIN, _PAST, _UTC, _RECORD, _JOB = range(5)


@attrs.frozen
class _Slot:
    """A saved field of a record class as the form holds it: its name, how it is held (`kind`,
    above), the value it is at its default (as declared, else None) and the value of the form
    that stands for it (null for a past time not set), the record class it holds, if any, and
    how a value of it is read (the converter's hook for its type)."""

    name: str
    kind: int
    default: Any
    saved: Any
    record: Any  # type | None
    structure: Callable[[Any, Any], Any]
    type: Any


def _default(field: attrs.Attribute[Any]) -> Any:
    """What null stands for: a plain default; else None (a default made by a factory is
    never taken for one: the field's value is always written)."""
    if field.default is attrs.NOTHING or isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
        return None
    return field.default


def _kind(field: attrs.Attribute[Any], record: type | None) -> int:
    """How a field is held (a time by its mark, `_state`; a record by its class)."""
    time = field.metadata.get("time")
    if time is not None:
        return {"past": _PAST, "utc": _UTC}[time]
    if record is None:
        return _PLAIN
    if record is Job:
        return _JOB
    if record not in _RECORDS:
        raise TypeError(f"{field.name}: the links' form holds no {record.__name__}")
    return _RECORD


@functools.cache
def _slots(cls: type) -> tuple[_Slot, ...]:
    """The saved fields of `cls`, in declared order, as the form holds them."""
    return tuple(
        _Slot(
            field.name,
            kind,
            default,
            None if kind == _PAST else converter.unstructure(default),
            record if kind == _RECORD else None,
            converter.get_structure_hook(field.type),
            field.type,
        )
        for field in attrs.fields(attrs.resolve_types(cls))
        if field.metadata.get("saved", True) and field.name not in _LINKS_OWN
        for default in [_default(field)]
        for record in [record_type(field)]
        for kind in [_kind(field, record)]
    )


def carries(arguments: dict[str, Any]) -> bool:
    """Whether a link's SAQ arguments carry its checkpoint (a link of an earlier version: a
    link now runs from the state its wait's records keep, `_saq_links.Kept`)."""
    return "saved" in arguments or "checkpoint" in arguments


def carried(arguments: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint a link's SAQ arguments hold (in either form; None: a wait not begun)."""
    saved: dict[str, Any] | None = arguments.get("saved", arguments.get("checkpoint"))
    return saved


# Writing: one rule over the fields of each record.


@checkpoint_errors("the wait's checkpoint cannot be taken")
def link_checkpoint(rules: Rules, state: JobState) -> list[Any]:
    """The wait's checkpoint in the links' form (module docstring)."""
    base = Timebase(rules.policy)
    header = job_header(rules, base)
    return [_values(header, base, state.job_id), _values(state, base, state.job_id)]


def _values(record: Any, base: Timebase, job_id: str) -> list[Any]:
    """The values of `record` (the header, or a record of `_state`) in the form."""
    values: list[Any] = []
    kept = 0  # how many values to keep: those up to the last off its default
    for slot in _slots(record.__class__):
        value = getattr(record, slot.name)
        kind = slot.kind
        if value == slot.default:  # None, but for a plain value
            values.append(None if kind == _PAST else value)
            continue
        if kind == _PAST:
            value = round(base.relative(value) * 1e6)
        elif kind == _UTC:  # a time of the header, or of this clock
            moment = value if isinstance(value, datetime) else base.to_utc(value)
            value = (moment - (_EPOCH if slot.name == _BASE else base.taken_at)) // _MICROSECOND
        elif kind == _RECORD:
            value = _values(value, base, job_id)
        elif kind == _JOB:  # in its wire form, less the link's own job id
            value = converter.unstructure(value)
            if value.get("id") == job_id:
                del value["id"]
        values.append(value)
        kept = len(values)
    return values[:kept]


# Reading: the form's values put back by the same slots; the forms before it, by way of the
# whole checkpoint.


def resume_link(data: Any, job_id: str, policy: PollPolicy) -> tuple[Rules, JobState]:
    """The rules and the state of a job's wait, on `policy`'s clock, from the checkpoint a
    link carries in the links' form (module docstring), in the keyed form of the previous
    version, or whole; else a `CheckpointError`."""
    if not isinstance(data, list):
        rules, state, _owed = resume_job(checkpoint_of(data, job_id, policy), job_id, policy)
        return rules, state
    with checkpoint_errors(_WHAT):
        if len(data) != 2:
            raise ValueError(f"expected a header and a state, got {len(data)} values")
        header_values, state_values = data
        # The version first: a form of a later one says so, whatever else it holds.
        version = header_values[0] if type(header_values) is list and header_values else None
        if type(version) is not int or version != VERSION:
            raise ValueError(f"version {version!r:.40} is not the links' form's ({VERSION})")
        fields = _read(JobCheckpoint, header_values, None, job_id)
        try:
            header = JobCheckpoint(**fields)
        except ConfigurationError as exc:  # the timeout's check, worded for a user's value
            raise ValueError(str(exc)) from None
        base = Timebase(policy, header.taken_at)
        state = JobState(job_id=job_id, **_read(JobState, state_values, base, job_id))
        return resumed(header, state, base), state


def _read(cls: type, values: Any, base: Timebase | None, job_id: str) -> dict[str, Any]:
    """The fields of a record of `cls` from its values in the form, its times on `base`'s
    clock (None: the header, whose times stay UTC, counted from its `taken_at`)."""
    if type(values) is not list:
        raise TypeError(f"{cls.__name__}: expected a list of values, got {type(values).__name__}")
    fields: dict[str, Any] = {}
    count = len(values)
    since = _EPOCH if base is None else base.taken_at
    for position, slot in enumerate(_slots(cls)):
        value = values[position] if position < count else slot.saved  # left out: its default
        kind = slot.kind
        try:
            if value is None:
                # A past time not set; else what the converter makes of null (an error but
                # for an optional field).
                value = slot.default if kind == _PAST else slot.structure(value, slot.type)
            elif kind == _PAST:
                assert base is not None, "a header holds no past time"
                value = base.restored(slot.name, "past", _microseconds(value) / 1e6)
            elif kind == _UTC:
                value = within_reach(since + _microseconds(value) * _MICROSECOND, value)
                if slot.name == _BASE:  # the header's times after it count from it
                    since = value
                if base is not None:
                    value = base.restored(slot.name, "utc", value.timestamp())
            elif kind == _RECORD:
                value = slot.record(**_read(slot.record, value, base, job_id))
            else:
                if kind == _JOB and isinstance(value, dict) and "id" not in value:
                    value = {"id": job_id, **value}
                value = slot.structure(value, slot.type)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{slot.name}: {exc}") from None
        fields[slot.name] = value
    return fields


def _microseconds(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected a time in whole microseconds, got {type(value).__name__}")
    return value


def checkpoint_of(data: Any, job_id: str, policy: PollPolicy) -> Any:
    """The whole checkpoint a link of the previous version carries in the keyed form, on
    `policy`'s clock; what is not in it (the whole checkpoint of a link written before it, or
    no checkpoint at all) as it is, for `resume_job` to read or refuse."""
    if not isinstance(data, dict) or "job_id" in data:
        return data
    whole = {**data, "job_id": job_id}
    unset_past = _unset_past(policy, _time_of(data.get(_BASE)))
    _put_back(JobCheckpoint, whole, unset_past)
    _put_back(JobState, whole, unset_past)
    return _with_job_id(whole, job_id)


def _put_back(cls: type, data: dict[str, Any], unset_past: float) -> None:
    """The fields the keyed form leaves out, put back as their defaults."""
    for slot in _slots(cls):
        if slot.name not in data:
            data[slot.name] = unset_past if slot.kind == _PAST else slot.saved
        elif slot.record is not None and isinstance(data[slot.name], dict):
            data[slot.name] = record = dict(data[slot.name])  # the link's own stays as it is
            _put_back(slot.record, record, unset_past)


def _with_job_id(whole: dict[str, Any], job_id: str) -> dict[str, Any]:
    if isinstance(job := whole.get("job"), dict) and "id" not in job:
        whole["job"] = {"id": job_id, **job}
    return whole


def _time_of(saved: Any) -> datetime | None:
    """A saved time (None: none, `resume_job` says what is wrong with it)."""
    try:
        return datetime.fromisoformat(saved)
    except (TypeError, ValueError):
        return None


def _unset_past(policy: PollPolicy, taken_at: datetime | None) -> float:
    """The saved form of a time not set (0.0 on `policy`'s clock) in a checkpoint taken at
    `taken_at`: `resume_job` moves it back to 0.0 (to within the microseconds between)."""
    if taken_at is None:
        return 0.0
    try:
        base = Timebase(policy, taken_at)
    except (ValueError, OverflowError):
        return 0.0  # `resume_job` says what is wrong with `taken_at`
    return min(round(-base.origin, 6), 0.0)

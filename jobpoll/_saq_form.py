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
reads it back (`checkpoint_of`):

- a value is as the whole checkpoint saves it, but for the times: each is whole microseconds,
  `taken_at` after the Unix epoch, any other ("utc": an ISO time in the whole checkpoint, or
  "past": seconds before `taken_at`) after `taken_at`; a past time not set (0.0) is null, put
  back as the saved form of 0.0 on the reader's clock;
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

What is read back is a whole checkpoint of the same version, which `resume_job` reads and
checks as any other. The forms written before this one are read too: the keyed form (a dict:
the whole checkpoint less the job id and the fields at their defaults), which a link of the
previous version carries as its `saved` argument, and the whole checkpoint, its `job_id` in
it, which the oldest carry as `checkpoint` (`carried`). A link runs from either as it is, and
hands on this form.
"""

from __future__ import annotations

import contextlib
import functools
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from jobpoll._checkpoint import JobCheckpoint, job_checkpoint
from jobpoll._policy import PollPolicy
from jobpoll._rules import Rules
from jobpoll._saved import Timebase, converter
from jobpoll._state import JobState, PaceState, record_type
from jobpoll._wire import format_timestamp

#: The records a checkpoint holds in their saved form (`_saved`); a `Job` is in its wire form.
_RECORDS = (JobState, PaceState)

#: The fields the link's own job id stands for.
_LINKS_OWN = frozenset({"job_id"})

#: The time the form's other times count from, itself counted from the Unix epoch.
_BASE = "taken_at"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@attrs.frozen
class _Slot:
    """A saved field of a record class as the form holds it: its name, the value null stands
    for (its default, else None) and that value as the whole checkpoint saves it, how it is a
    time ("past", "utc" or None), and the record class it holds, if any."""

    name: str
    default: Any
    saved: Any
    time: str | None
    record: type | None


def _default(field: attrs.Attribute[Any]) -> Any:
    """What null stands for: a plain default; else None (a default made by a factory is
    never taken for one: the field's value is always written)."""
    if field.default is attrs.NOTHING or isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
        return None
    return field.default


@functools.cache
def _slots(cls: type) -> tuple[_Slot, ...]:
    """The saved fields of `cls`, in declared order, as the form holds them."""
    return tuple(
        _Slot(
            field.name,
            default,
            converter.unstructure(default),
            field.metadata.get("time"),
            record if (record := record_type(field)) in _RECORDS else None,
        )
        for field in attrs.fields(cls)
        if field.metadata.get("saved", True) and field.name not in _LINKS_OWN
        for default in [_default(field)]
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


def link_checkpoint(rules: Rules, state: JobState) -> list[Any]:
    """The wait's checkpoint in the links' form (module docstring)."""
    data = job_checkpoint(rules, state)
    if state.job is not None and state.job.id == state.job_id:
        del data["job"]["id"]
    taken_at = datetime.fromisoformat(data[_BASE])
    return [_values(JobCheckpoint, data, None, taken_at), _values(JobState, data, state, taken_at)]


def _values(cls: type, data: dict[str, Any], record: Any, taken_at: datetime) -> list[Any]:
    """The values of a record of `cls`, saved as `data`, in the form. `record`: the record
    itself, whose "past" times tell whether they are set (their saved form depends on the
    clock); None: the header, whose saved values tell."""
    values: list[Any] = []
    kept = 0  # how many values to keep: those up to the last off its default
    for slot in _slots(cls):
        value = data[slot.name]
        at_default = (
            value == slot.saved if record is None else getattr(record, slot.name) == slot.default
        )
        if value is None or (slot.time == "past" and at_default):
            value = None
        elif slot.record is not None:
            value = _values(slot.record, value, getattr(record, slot.name), taken_at)
        elif slot.time is not None:
            value = _written_time(slot.time, value, _EPOCH if slot.name == _BASE else taken_at)
        values.append(value)
        if not at_default:
            kept = len(values)
    return values[:kept]


def _written_time(time: str | None, value: Any, since: datetime) -> Any:
    """A saved value as the form writes it: a time as whole microseconds `since`."""
    if time == "past":
        return round(value * 1e6)
    if time == "utc":
        return (datetime.fromisoformat(value) - since) // _MICROSECOND
    return value


# Reading: the form's values put back by the same fields, or a keyed form's defaults.


def checkpoint_of(data: Any, job_id: str, policy: PollPolicy) -> Any:
    """The whole checkpoint a link carries in the links' form (module docstring) or in the
    keyed form of the previous version, on `policy`'s clock; what is in neither (the whole
    checkpoint of a link written before them, or no checkpoint at all) as it is, for
    `resume_job` to read or refuse."""
    if isinstance(data, list):
        return _read_form(data, job_id, policy)
    if not isinstance(data, dict) or "job_id" in data:
        return data
    whole = {**data, "job_id": job_id}
    unset_past = _unset_past(policy, _time_of(data.get(_BASE)))
    _put_back(JobCheckpoint, whole, unset_past)
    _put_back(JobState, whole, unset_past)
    return _with_job_id(whole, job_id)


def _read_form(form: list[Any], job_id: str, policy: PollPolicy) -> Any:
    header, state = [*form, [], []][:2]
    if not isinstance(header, list) or not isinstance(state, list):
        return form  # `resume_job` says what it is
    whole = _read(JobCheckpoint, header, None, 0.0)  # the header has no "past" time
    taken_at = _time_of(whole[_BASE])
    whole.update(job_id=job_id, **_read(JobState, state, taken_at, _unset_past(policy, taken_at)))
    return _with_job_id(whole, job_id)


def _read(
    cls: type, values: list[Any], taken_at: datetime | None, unset_past: float
) -> dict[str, Any]:
    data: dict[str, Any] = {}
    count = len(values)
    for position, slot in enumerate(_slots(cls)):
        if position >= count:  # left out: at its default
            data[slot.name] = unset_past if slot.time == "past" else slot.saved
            continue
        value = values[position]
        if value is None:
            data[slot.name] = unset_past if slot.time == "past" else None
        elif slot.time is None:
            if slot.record is not None and isinstance(value, list):
                value = _read(slot.record, value, taken_at, unset_past)
            data[slot.name] = value
        elif slot.name == _BASE:
            data[slot.name] = _read_time(slot.time, value, _EPOCH)
            taken_at = _time_of(data[slot.name])  # the header's times after it count from it
        else:
            data[slot.name] = _read_time(slot.time, value, taken_at)
    return data


def _read_time(time: str | None, value: Any, since: datetime | None) -> Any:
    """A value of the form as the whole checkpoint saves it, a time `since` the time it
    counts from; what is no time in the form (a string, say) as it is, for `resume_job` to
    refuse."""
    if type(value) is not int:
        return value
    if time == "past":
        return value / 1e6
    if time == "utc" and since is not None:
        with contextlib.suppress(OverflowError):  # out of any calendar: `resume_job` refuses it
            return format_timestamp(since + value * _MICROSECOND)
    return value


def _put_back(cls: type, data: dict[str, Any], unset_past: float) -> None:
    """The fields the keyed form leaves out, put back as their defaults."""
    for slot in _slots(cls):
        if slot.name not in data:
            data[slot.name] = unset_past if slot.time == "past" else slot.saved
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

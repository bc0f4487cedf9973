"""The form in which a SAQ link carries its wait's checkpoint: `job_checkpoint`'s, less what
the declarations already say. Redis holds a link per waiting job, and SAQ writes a link's
record again twice as it runs it: each byte is paid per waiting job and per poll.

Left out (`link_checkpoint`), and put back on reading (`checkpoint_of`):

- the job id: the link's own (its `job_id` argument), in the header and in the job seen
  (unless the service spelled it otherwise);
- each field of `JobState` and `PaceState` whose value is its declared default (from
  `attrs.fields`, so a field added there is carried with no change here): before progress
  moves, most of a pace; a time left out was not set (0.0), and is put back as the saved form
  of 0.0 on the reader's clock;
- the header's `timeout` and `deadline` when None, and `owed` when False (a link owes no
  snapshot);
- `next_poll_at` when it is when the wait's next poll is due, which the wait's records keep
  as well (`leave_out_due`, `put_back_due`).

What is put back is a checkpoint of the same version, which `resume_job` reads and checks as
any other. The wait's records keep this form (`_saq_links.Kept`); a link of an earlier version
carries it as its `saved` argument, and one older still the whole checkpoint, its `job_id` in
it, as its `checkpoint` argument (`carried`): it is read as it is, and handed on in this form.
"""

from __future__ import annotations

import functools
import math
from datetime import UTC, datetime
from typing import Any

import attrs

from jobpoll._checkpoint import job_checkpoint
from jobpoll._policy import PollPolicy
from jobpoll._rules import Rules
from jobpoll._saved import Timebase, converter
from jobpoll._state import JobState, PaceState, record_type

#: Seconds within which a checkpoint's `next_poll_at` is taken for its link's `due`.
DUE_WITHIN = 0.001

#: The header's fields a link leaves out, with the value each then stands for.
HEADER_UNSET: dict[str, Any] = {"timeout": None, "deadline": None, "owed": False}


@attrs.frozen
class _Default:
    """A saved field of a record class with a plain default: its name, its default, that
    default as saved (None for a "past" time: it depends on the clock), and the record
    class it holds, if any."""

    name: str
    default: Any
    saved: Any
    past: bool
    record: type | None


#: The records a checkpoint holds in their saved form (`_saved`); a `Job` is in its wire form.
_RECORDS = (JobState, PaceState)


@functools.cache
def _defaults(cls: type) -> tuple[_Default, ...]:
    return tuple(
        _Default(
            field.name,
            field.default,
            converter.unstructure(field.default),
            field.metadata.get("time") == "past",
            record if (record := record_type(field)) in _RECORDS else None,
        )
        for field in attrs.fields(cls)
        if field.default is not attrs.NOTHING
        and not isinstance(field.default, attrs.Factory)  # type: ignore[arg-type]
        and field.metadata.get("saved", True)
    )


def carries(arguments: dict[str, Any]) -> bool:
    """Whether a link's SAQ arguments carry its checkpoint (a link of an earlier version: a
    link now runs from the state its wait's records keep, `_saq_links.Kept`)."""
    return "saved" in arguments or "checkpoint" in arguments


def carried(arguments: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint a link's SAQ arguments hold (in either form; None: a wait not begun)."""
    saved: dict[str, Any] | None = arguments.get("saved", arguments.get("checkpoint"))
    return saved


def link_checkpoint(rules: Rules, state: JobState) -> dict[str, Any]:
    """The wait's checkpoint as its next link carries it (module docstring)."""
    data = job_checkpoint(rules, state)
    del data["job_id"]
    if state.job is not None and state.job.id == state.job_id:
        del data["job"]["id"]
    for name, unset in HEADER_UNSET.items():
        if name in data and data[name] is unset:
            del data[name]
    _leave_out_defaults(JobState, state, data)
    return data


def _leave_out_defaults(cls: type, record: Any, data: dict[str, Any]) -> None:
    for field in _defaults(cls):
        value = getattr(record, field.name)
        if value == field.default:
            del data[field.name]
        elif field.record is not None and value is not None:
            _leave_out_defaults(field.record, value, data[field.name])


def leave_out_due(checkpoint: Any, due: float | None) -> Any:
    """`checkpoint` in the links' form less its `next_poll_at` if that is `due` (epoch
    seconds) to the millisecond (the two are taken of one clock microseconds apart)."""
    if due is None or not isinstance(checkpoint, dict) or "job_id" in checkpoint:
        return checkpoint
    try:
        at = datetime.fromisoformat(checkpoint["next_poll_at"]).timestamp()
    except (KeyError, TypeError, ValueError, OverflowError):
        return checkpoint
    if abs(at - due) > DUE_WITHIN:
        return checkpoint
    return {name: value for name, value in checkpoint.items() if name != "next_poll_at"}


def put_back_due(checkpoint: Any, due: float | None) -> Any:
    """`checkpoint` with the `next_poll_at` `leave_out_due` left out put back."""
    if due is None or not isinstance(checkpoint, dict) or "job_id" in checkpoint:
        return checkpoint
    if "next_poll_at" in checkpoint or not math.isfinite(due):
        return checkpoint
    at = converter.unstructure(datetime.fromtimestamp(due, UTC))
    return {**checkpoint, "next_poll_at": at}


def checkpoint_of(data: Any, job_id: str, policy: PollPolicy) -> Any:
    """The whole checkpoint a link carries in its form (module docstring), on `policy`'s
    clock; what is not in that form (the whole checkpoint of a link written before it, or
    no checkpoint at all) as it is, for `resume_job` to read or refuse."""
    if not isinstance(data, dict) or "job_id" in data:
        return data
    unset_past = _unset_past(policy, data.get("taken_at"))
    whole = {**HEADER_UNSET, **data, "job_id": job_id}
    if isinstance(job := whole.get("job"), dict) and "id" not in job:
        whole["job"] = {"id": job_id, **job}
    _put_back(JobState, whole, unset_past)
    return whole


def _put_back(cls: type, data: dict[str, Any], unset_past: float) -> None:
    for field in _defaults(cls):
        if field.name not in data:
            data[field.name] = unset_past if field.past else field.saved
        elif field.record is not None and isinstance(data[field.name], dict):
            data[field.name] = record = dict(data[field.name])  # the link's own stays as it is
            _put_back(field.record, record, unset_past)


def _unset_past(policy: PollPolicy, taken_at: Any) -> float:
    """The saved form of a time not set (0.0 on `policy`'s clock) in a checkpoint taken at
    `taken_at`: `resume_job` moves it back to 0.0 (to within the microseconds between)."""
    try:
        base = Timebase(policy, datetime.fromisoformat(taken_at))
    except (TypeError, ValueError, OverflowError):
        return 0.0  # `resume_job` says what is wrong with `taken_at`
    return min(round(-base.origin, 6), 0.0)

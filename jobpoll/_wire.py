"""The JSON wire format of a job, in one cattrs converter.

Tolerant where the service is loose, strict where data is wrong:

- `"progress": "77"` (the service's own reference example) is 77; `77.0` is 77; a missing or
  null progress is 0 (the service documents progress only for running jobs). `77.9`, `true`,
  `-5`, `101` and `"abc"` are errors: cattrs alone would turn 77.9 into 77 without a word.
- a status string jobpoll does not know becomes `JobStatus.UNKNOWN`, the string kept in
  `raw_status`; statuses are matched case-insensitively.
- `createdAt` must be an ISO 8601 date-time; one without an offset is taken as UTC.
- keys jobpoll does not know are ignored.

Every error names the field by its wire name (`createdAt`, not `created_at`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter

from jobpoll._models import MAX_PROGRESS, MIN_PROGRESS, Job, JobStatus

__all__ = ["WireError", "decode_job", "format_timestamp", "job_from_wire", "job_to_wire"]


class WireError(ValueError):
    """A body that is no valid job; the client turns it into a `DecodeError` with context."""

    def __init__(self, message: str, *, field: str | None = None, malformed: bool = False) -> None:
        super().__init__(message)
        self.field = field
        #: True when the body is not even JSON: the page of a proxy or a cut-off answer.
        self.malformed = malformed


#: Wire names that are not the attribute's name in camelCase. `status` feeds two attributes.
_RENAMES: dict[tuple[type, str], str] = {(Job, "raw_status"): "status"}
#: Fields whose wire value needs a rule of its own rather than their type's hook.
_FIELD_HOOKS: dict[tuple[type, str], Callable[[Any, Any], Any]] = {}
#: Attributes computed from others, never written on the wire.
_NOT_WRITTEN: frozenset[tuple[type, str]] = frozenset({(Job, "status")})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _wire_name(cls: type, name: str) -> str:
    return _RENAMES.get((cls, name), _camel(name))


# The hooks below run on every poll: each checks its type inline rather than through another
# hook, since a Python call per field is most of what decoding costs.


def _not_a_string(value: object) -> WireError:
    return WireError(f"expected a string, got {_describe(value)}")


def _structure_str(value: object, _type: object) -> str:
    if type(value) is not str:
        raise _not_a_string(value)
    return value


def _structure_optional_str(value: object, _type: object) -> str | None:
    if value is not None and type(value) is not str:
        raise _not_a_string(value)
    return value


def _structure_status(value: object, _type: object) -> JobStatus:
    if type(value) is not str:
        raise _not_a_string(value)
    return JobStatus.parse(value)


def _structure_datetime(value: object, _type: object) -> datetime:
    if type(value) is not str:
        raise _not_a_string(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise WireError(f"expected an ISO 8601 date-time, got {_describe(value)}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


_DIGITS = re.compile(r"[0-9]{1,3}")


def _structure_progress(value: object, _type: object) -> int:
    number: int | None = None
    if value is None:
        number = MIN_PROGRESS
    elif type(value) is int:
        number = value
    elif type(value) is float and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number = int(value)
    if number is None or not MIN_PROGRESS <= number <= MAX_PROGRESS:
        raise WireError(f"expected a whole number from 0 to 100, got {_describe(value)}")
    return number


def _describe(value: object) -> str:
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else None
    if text is None:
        text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


_FIELD_HOOKS[Job, "progress"] = _structure_progress


def format_timestamp(value: datetime) -> str:
    """ISO 8601 as the service writes it: UTC with a `Z`."""
    return value.isoformat().replace("+00:00", "Z")


def _make_converter() -> cattrs.Converter:
    converter = make_converter(detailed_validation=True, forbid_extra_keys=False)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(str | None, _structure_optional_str)
    converter.register_structure_hook(datetime, _structure_datetime)
    converter.register_structure_hook(JobStatus, _structure_status)
    converter.register_unstructure_hook(datetime, format_timestamp)

    def structure_fn(cls: type) -> Callable[[Any, Any], Any]:
        overrides = {
            a.name: override(
                rename=_wire_name(cls, a.name), struct_hook=_FIELD_HOOKS.get((cls, a.name))
            )
            for a in attrs.fields(cls)
        }
        return make_dict_structure_fn(cls, converter, **overrides)  # type: ignore[arg-type]

    def unstructure_fn(cls: type) -> Callable[[Any], Any]:
        overrides = {
            a.name: override(omit=True)
            if (cls, a.name) in _NOT_WRITTEN
            else override(rename=_wire_name(cls, a.name))
            for a in attrs.fields(cls)
        }
        return make_dict_unstructure_fn(cls, converter, **overrides)  # type: ignore[arg-type]

    converter.register_structure_hook_factory(attrs.has, structure_fn)
    converter.register_unstructure_hook_factory(attrs.has, unstructure_fn)
    return converter


_converter = _make_converter()
# Called directly: the converter's dispatch by type is a cost on every poll, and the type is known.
_structure_job = _converter.get_structure_hook(Job)


def _first_field_error(exc: cattrs.ClassValidationError, cls: type) -> WireError:
    """The first invalid field of a class, by its wire name, with a message fit for a log."""
    with_notes, _without = exc.group_exceptions()
    for error, note in with_notes:
        field = _wire_name(cls, note.name)
        if isinstance(error, KeyError):
            return WireError(f"{field}: required field missing", field=field)
        return WireError(f"{field}: {error}", field=field)
    return WireError(str(exc))  # pragma: no cover - cattrs notes every attribute's error


def decode_job(body: bytes | str) -> Job:
    """A `Job` from a response body, or a `WireError` saying what is wrong with it."""
    try:
        data = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise WireError(f"body is not valid JSON ({exc})", malformed=True) from None
    except RecursionError:
        raise WireError("body is not valid JSON (nested too deeply)", malformed=True) from None
    if not isinstance(data, dict):
        raise WireError(f"body is not a JSON object but {_JSON_KINDS.get(type(data), 'a value')}")
    try:
        job: Job = _structure_job(data, Job)
    except cattrs.ClassValidationError as exc:
        raise _first_field_error(exc, Job) from None
    return job


def job_from_wire(data: dict[str, Any]) -> Job:
    """A `Job` from the JSON object the service sends (already parsed), or a `WireError`:
    how a checkpoint reads back the jobs it holds in their wire form."""
    if not isinstance(data, dict):
        raise WireError(f"not a JSON object but {_JSON_KINDS.get(type(data), 'a value')}")
    try:
        job: Job = _structure_job(data, Job)
    except cattrs.ClassValidationError as exc:
        raise _first_field_error(exc, Job) from None
    return job


_JSON_KINDS: dict[type, str] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def job_to_wire(job: Job) -> dict[str, Any]:
    """The JSON object the service would send for `job` (what the fake service answers)."""
    wire: dict[str, Any] = _converter.unstructure(job)
    return wire

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
from typing import Any, TypeGuard, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter

from jobpoll import _errors
from jobpoll._errors import JobFailedError, JobPollError, JobStalled, WaitTimeout
from jobpoll._models import MAX_PROGRESS, MIN_PROGRESS, Job, JobStatus

T = TypeVar("T")

__all__ = [
    "WireError",
    "decode_job",
    "format_timestamp",
    "job_from_wire",
    "job_to_wire",
    "record_from_wire",
    "record_to_wire",
]


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
    # Such a field (the user) holds one of a few values: each is shared by every job rather
    # than copied per job from each body.
    if value is None:
        return None
    if type(value) is not str:
        raise _not_a_string(value)
    shared = _SHARED.get(value)
    if shared is None:
        shared = value
        if len(_SHARED) < _MAX_SHARED:
            _SHARED[value] = value
    return shared


#: The strings `_structure_optional_str` shares; bounded, so a server that sends a new user
#: in every answer costs a copy per job, as without sharing, and nothing more.
_SHARED: dict[str, str] = {}
_MAX_SHARED = 256


def _structure_status(value: object, _type: object) -> JobStatus:
    if type(value) is not str:
        raise _not_a_string(value)
    return _STATUSES.get(value) or JobStatus.parse(value)  # the exact string: no call


def _structure_raw_status(value: object, _type: object) -> str:
    # The status's own string when the server sent exactly that (nearly always): one string
    # shared by every job, instead of a copy per job from each body.
    if type(value) is not str:
        raise _not_a_string(value)
    return _STATUS_STRINGS.get(value, value)


_STATUSES: dict[str, JobStatus] = {status.value: status for status in JobStatus}
_STATUS_STRINGS: dict[str, str] = {status.value: status.value for status in JobStatus}


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
_FIELD_HOOKS[Job, "raw_status"] = _structure_raw_status


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
    # Errors in a saved `JobResult`: matched on the class at hand (a subclass of the field's
    # `JobPollError`), so that each is written as what it is.
    converter.register_unstructure_hook_func(_is_error_class, _unstructure_error)
    converter.register_structure_hook_func(_is_error_class, _structure_error)
    return converter


def _is_error_class(cls: Any) -> TypeGuard[type[JobPollError]]:
    return isinstance(cls, type) and issubclass(cls, JobPollError)


#: The attribute of an error that is its result's business, not written with the error.
_ERROR_JOB = "job"
#: The errors that carry the job they are about as `job`.
_JOB_ERRORS = (JobFailedError, JobStalled, WaitTimeout)
_PLAIN = (str, int, float, bool, type(None))


def _snake(name: str) -> str:
    return re.sub(r"[A-Z]", lambda match: "_" + match.group(0).lower(), name)


def _unstructure_error(error: JobPollError) -> dict[str, Any]:
    """An error as plain data: its class name, its message, and its plain attributes (the
    job it carries is the result's own `job`, not written twice)."""
    attributes: dict[str, Any] = {}
    for name, value in vars(error).items():
        if isinstance(value, JobPollError):  # a WaitTimeout's last_error
            attributes[_camel(name)] = _unstructure_error(value)
        elif isinstance(value, _PLAIN) and name != _ERROR_JOB:
            attributes[_camel(name)] = value
    return {"type": type(error).__name__, "message": str(error), "attributes": attributes}


def _structure_error(data: object, _type: object) -> JobPollError:
    """The error `_unstructure_error` wrote, of the same class (`JobPollError` for a name
    jobpoll does not know), with the same message and attributes; not re-raised anew, so
    no constructor runs."""
    if not isinstance(data, dict) or not isinstance(data.get("message"), str):
        raise WireError(f"expected an error object with a message, got {_describe(data)}")
    named = getattr(_errors, str(data.get("type")), None)
    cls = named if _is_error_class(named) else JobPollError
    error: JobPollError = cls.__new__(cls)
    error.args = (data["message"],)
    error.job_id = None
    attributes = data.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise WireError(f"expected error attributes as an object, got {_describe(attributes)}")
    for key, value in attributes.items():
        name = _snake(key) if isinstance(key, str) and key.isidentifier() else "_"
        if name.startswith("_") or hasattr(BaseException, name):
            continue  # nothing _unstructure_error writes: not set (`args` is the message)
        setattr(error, name, _structure_error(value, _type) if isinstance(value, dict) else value)
    return error


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


def decode_job(body: bytes | str, *, job_id: str | None = None) -> Job:
    """A `Job` from a response body, or a `WireError` saying what is wrong with it.

    `job_id`: the id asked for; when the body names the same one, the `Job` holds the caller's
    string rather than a copy read from the body (one string per job, however many polls).
    """
    data = None
    if type(body) is bytes and body[:2] == b'{"':
        # What the service sends: UTF-8, as `json.loads` would detect, read without its
        # detection (a Python function per call) and its dispatch on arguments.
        try:  # noqa: SIM105 - suppress() would cost a context manager on every poll
            data = _DECODER.decode(body.decode("utf-8", "surrogatepass"))
        except (ValueError, RecursionError):
            pass  # explained by json.loads below, in its own words
    if type(data) is not dict:
        data = _json_object(body)
    if job_id is not None and data.get("id") == job_id:
        data["id"] = job_id
    try:
        job: Job = _structure_job(data, Job)
    except cattrs.ClassValidationError as exc:
        raise _first_field_error(exc, Job) from None
    return job


def _json_object(body: bytes | str) -> dict[str, Any]:
    """The JSON object a body holds, or a `WireError` saying what it is instead."""
    try:
        data = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise WireError(f"body is not valid JSON ({exc})", malformed=True) from None
    except RecursionError:
        raise WireError("body is not valid JSON (nested too deeply)", malformed=True) from None
    if not isinstance(data, dict):
        raise WireError(f"body is not a JSON object but {_JSON_KINDS.get(type(data), 'a value')}")
    return data


_DECODER = json.JSONDecoder()


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


def _nested_field_error(exc: cattrs.ClassValidationError, cls: type) -> WireError:
    """As `_first_field_error`, through a record held in a field (a result's `job`): the
    field is named by its path, e.g. `job.createdAt`."""
    with_notes, _without = exc.group_exceptions()
    for error, note in with_notes:
        if isinstance(error, cattrs.ClassValidationError):
            inner_cls = next(
                (t for t in (note.type, *getattr(note.type, "__args__", ())) if attrs.has(t)), cls
            )
            inner = _nested_field_error(error, inner_cls)
            field = f"{_wire_name(cls, note.name)}.{inner.field}"
            return WireError(f"{_wire_name(cls, note.name)}.{inner}", field=field)
        break
    return _first_field_error(exc, cls)


def record_to_wire(record: Any) -> dict[str, Any]:
    """A `Job` or a `JobResult` as JSON-ready data, in the service's names and formats."""
    wire: dict[str, Any] = _converter.unstructure(record)
    return wire


def record_from_wire(data: Any, cls: type[T]) -> T:
    """What `record_to_wire` wrote, back as `cls` (a `Job` or a `JobResult`).

    Raises:
        WireError: the data is not such a record; the message names the field.
    """
    if not isinstance(data, dict):
        raise WireError(f"expected a JSON object, got {_describe(data)}")
    try:
        record: T = _converter.structure(data, cls)
    except cattrs.ClassValidationError as exc:
        raise _nested_field_error(exc, cls) from None
    error = getattr(record, "error", None)
    if isinstance(error, _JOB_ERRORS):
        # The job such an error carries was written once, as the result's own: give it back.
        error.job = getattr(record, "job", None)
    return record


def job_to_wire(job: Job) -> dict[str, Any]:
    """The JSON object the service would send for `job` (what the fake service answers)."""
    wire: dict[str, Any] = _converter.unstructure(job)
    return wire

"""The JSON wire format, in one cattrs converter: attrs records and jobpoll's errors to
JSON-ready data and back. A field's wire name is its name in camelCase; values are checked
strictly (cattrs alone would take `5` for a string); an error is its class name, message and
declared attributes. What is particular to one field is declared on it with `wire_rule`.
"""

from __future__ import annotations

import functools
import json
import sys
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeGuard, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter

from jobpoll import _errors
from jobpoll._errors import JobPollError

T = TypeVar("T")

#: A function that reads one field's wire value: (value, type) -> the attribute's value.
Reader = Callable[[Any, Any], Any]


class WireError(ValueError):
    """Data that is no valid record; the client turns it into a `DecodeError` with context."""

    def __init__(self, message: str, *, field: str | None = None, malformed: bool = False) -> None:
        super().__init__(message)
        self.field = field
        #: True when the body is not even JSON: the page of a proxy or a cut-off answer.
        self.malformed = malformed


@attrs.frozen
class _Rule:
    name: str | None
    read: Reader | None
    written: bool


#: The key of a field's metadata that holds its `_Rule`.
_RULE = "jobpoll.wire"
_NO_RULE = _Rule(None, None, written=True)


def wire_rule(
    *, name: str | None = None, read: Reader | None = None, written: bool = True
) -> dict[str, Any]:
    """A field's wire rule, as `attrs.field(metadata=...)`: its wire `name` when not its
    name in camelCase, a `read` function instead of its type's hook (raising `WireError`),
    and `written=False` for an attribute computed from another."""
    return {_RULE: _Rule(name, read, written)}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _wire_name(cls: type, name: str) -> str:
    field = getattr(attrs.fields(cls), name, None) if attrs.has(cls) else None
    rule = field.metadata.get(_RULE, _NO_RULE) if field is not None else _NO_RULE
    return rule.name or _camel(name)


# The hooks below run on every poll: each checks its type inline rather than through another
# hook, since a Python call per field is most of what decoding costs.


def _exactly(kind: type[T], expected: str) -> Callable[[object, object], T]:
    def structure(value: object, _type: object) -> T:
        if type(value) is not kind:
            raise WireError(f"expected {expected}, got {describe(value)}")
        return value

    return structure


def _structure_optional_str(value: object, _type: object) -> str | None:
    if value is None:
        return None
    if type(value) is not str:
        raise WireError(f"expected a string, got {describe(value)}")
    shared = _SHARED.get(value)
    if shared is None:
        shared = value
        if len(_SHARED) < _MAX_SHARED:
            _SHARED[value] = value
    return shared


#: The few values of a field such as the user, shared by every job rather than copied from
#: each body; bounded, so a new user in every answer costs no more than no sharing.
_SHARED: dict[str, str] = {}
_MAX_SHARED = 256


def _structure_datetime(value: object, _type: object) -> datetime:
    if type(value) is not str:
        raise WireError(f"expected a string, got {describe(value)}")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None:  # raised here, not in the handler: no exception kept as its context
        raise WireError(f"expected an ISO 8601 date-time, got {describe(value)}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _structure_float(value: object, _type: object) -> float:
    # An int stays one: what `to_dict` wrote (`"timeout": 200`) reads back the same.
    if type(value) is float or (type(value) is int and abs(value) <= sys.float_info.max):
        return value
    raise WireError(f"expected a number, got {describe(value)}")


def describe(value: object) -> str:
    """A wire value as an error message quotes it: JSON, at most 40 characters."""
    text = json.dumps(value) if isinstance(value, str | int | float | bool | None) else None
    if text is None:
        text = type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def format_timestamp(value: datetime) -> str:
    """ISO 8601 as the service writes it: UTC with a `Z`."""
    return value.isoformat().replace("+00:00", "Z")


def _make_converter() -> cattrs.Converter:
    converter = make_converter(detailed_validation=True, forbid_extra_keys=False)
    converter.register_structure_hook(str, _exactly(str, "a string"))
    converter.register_structure_hook(str | None, _structure_optional_str)
    converter.register_structure_hook(int, _exactly(int, "a whole number"))
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(bool, _exactly(bool, "true or false"))
    converter.register_structure_hook(datetime, _structure_datetime)
    converter.register_unstructure_hook(datetime, format_timestamp)

    def structure_fn(cls: type) -> Callable[[Any, Any], Any]:
        overrides = {}
        for a in attrs.fields(cls):
            read = a.metadata.get(_RULE, _NO_RULE).read
            overrides[a.name] = override(rename=_wire_name(cls, a.name), struct_hook=read)
        return make_dict_structure_fn(cls, converter, **overrides)  # type: ignore[arg-type]

    def unstructure_fn(cls: type) -> Callable[[Any], Any]:
        overrides = {}
        for a in attrs.fields(cls):
            written = a.metadata.get(_RULE, _NO_RULE).written
            overrides[a.name] = (
                override(rename=_wire_name(cls, a.name)) if written else override(omit=True)
            )
        return make_dict_unstructure_fn(cls, converter, **overrides)  # type: ignore[arg-type]

    converter.register_structure_hook_factory(attrs.has, structure_fn)
    converter.register_unstructure_hook_factory(attrs.has, unstructure_fn)
    # Matched on the class at hand (a subclass of the field's `JobPollError`), so that each
    # error is written as what it is.
    converter.register_unstructure_hook_func(_is_error_class, _unstructure_error)
    converter.register_structure_hook_func(_is_error_class, _structure_error)
    return converter


def _is_error_class(cls: Any) -> TypeGuard[type[JobPollError]]:
    return isinstance(cls, type) and issubclass(cls, JobPollError)


#: The attributes an error is written with: those its class declares, with their types.
_declared: Callable[[type], dict[str, Any]] = functools.cache(typing.get_type_hints)


def _unstructure_error(error: JobPollError) -> dict[str, Any]:
    """An error as plain data: its class name, its message, and its declared attributes."""
    declared = _declared(type(error))
    attributes = {
        _camel(name): _converter.unstructure(value)
        for name, value in vars(error).items()
        if name in declared
    }
    return {"type": type(error).__name__, "message": str(error), "attributes": attributes}


def _structure_error(data: object, _type: object) -> JobPollError:
    """The error `_unstructure_error` wrote (a `JobPollError` for a class name jobpoll does
    not know); an attribute may be missing only where its class has a default."""
    if not isinstance(data, dict) or type(data.get("message")) is not str:
        raise WireError(f"expected an error object with a message, got {describe(data)}")
    named = getattr(_errors, str(data.get("type")), None)
    cls = named if _is_error_class(named) else JobPollError
    attributes = data.get("attributes", {})
    if not isinstance(attributes, dict):
        raise WireError(f"expected error attributes as an object, got {describe(attributes)}")
    state: dict[str, Any] = {}
    for name, kind in _declared(cls).items():
        key = _camel(name)
        if key not in attributes:
            if hasattr(cls, name):
                continue
            raise WireError(f"attributes.{key}: required field missing", field=f"attributes.{key}")
        try:
            state[name] = _converter.structure(attributes[key], kind)
        except WireError as exc:
            error = _within(f"attributes.{key}", exc)
        else:
            continue
        raise error  # raised here, not in the handler: no exception kept as its context
    return _errors.restored(cls, (data["message"],), state)


_converter = _make_converter()


def _within(name: str, error: BaseException) -> WireError:
    """`error` as one about the field `name`, or about the field inside it that it names."""
    if isinstance(error, WireError) and error.field is not None:
        return WireError(f"{name}.{error}", field=f"{name}.{error.field}")
    if isinstance(error, KeyError):
        return WireError(f"{name}: required field missing", field=name)
    return WireError(f"{name}: {error}", field=name)


def _field_error(exc: cattrs.ClassValidationError, cls: type) -> WireError:
    """The first invalid field of a `cls`, by its wire name (its path, through a record held
    in a field: `job.createdAt`), with a message fit for a log."""
    with_notes, _without = exc.group_exceptions()
    for error, note in with_notes:
        if isinstance(error, cattrs.ClassValidationError):
            inner_cls = next(
                (t for t in (note.type, *getattr(note.type, "__args__", ())) if attrs.has(t)), cls
            )
            error = _field_error(error, inner_cls)
        return _within(_wire_name(cls, note.name), error)
    return WireError(str(exc))  # pragma: no cover - cattrs notes every attribute's error


def structure_function(cls: type[T]) -> Callable[[dict[str, Any]], T]:
    """A function that makes a `cls` from its wire data, or raises a `WireError` naming the
    first invalid field; the class's hook looked up once, not on every poll."""
    hook = _converter.get_structure_hook(cls)

    def structure(data: dict[str, Any]) -> T:
        try:
            record: T = hook(data, cls)
        except cattrs.ClassValidationError as exc:
            error = _field_error(exc, cls)
        else:
            return record
        raise error  # raised here, not in the handler: no exception kept as its context

    return structure


def json_object(body: bytes | str) -> dict[str, Any]:
    """The JSON object a body holds, or a `WireError` saying what it is instead, which keeps
    no `json.JSONDecodeError` as its context (that holds the whole document)."""
    try:
        data = (
            _DECODER.decode(body.decode("utf-8", "surrogatepass"))
            if type(body) is bytes and body[:2] == b'{"'  # the service's UTF-8: no detection
            else json.loads(body)  # which detects the encoding, a Python function per poll
        )
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        problem = f"body is not valid JSON ({exc})"
    except RecursionError:
        problem = "body is not valid JSON (nested too deeply)"
    else:
        if isinstance(data, dict):
            return data
        kind = "null" if data is None else _JSON_KINDS.get(type(data), "a number")
        raise WireError(f"body is not a JSON object but {kind}")
    raise WireError(problem, malformed=True)


_DECODER = json.JSONDecoder()
#: What else a JSON document may hold but null; all that is left is a number.
_JSON_KINDS: dict[type, str] = {list: "an array", str: "a string", bool: "a boolean"}


def record_to_wire(record: Any) -> dict[str, Any]:
    """An attrs record (a `Job`, a `JobResult`) as JSON-ready data, in the service's names."""
    wire: dict[str, Any] = _converter.unstructure(record)
    return wire


def record_from_wire(data: Any, cls: type[T]) -> T:
    """What `record_to_wire` wrote, back as `cls`, or a `WireError` naming the field."""
    if not isinstance(data, dict):
        raise WireError(f"expected a JSON object, got {describe(data)}")
    return structure_function(cls)(data)

"""A `Scenario` read from `jobpoll fake-server`'s options and a JSON/TOML file, or given by
`jobpoll demo`: every value checked before anything is served, a refusal naming where the
value comes from (`--job 'x:duration=-5'`, `file.toml: jobs[2]`) and what is allowed."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from jobpoll.testing import _values as check
from jobpoll.testing._faults import Body, Drop, Fault, HttpError, Slow
from jobpoll.testing._rules import FaultRule, JobRule, Scenario, shape
from jobpoll.testing._values import ScenarioError, checked

_FAULT_KINDS = "an HTTP status from 400 to 599, drop, cut, slow, html or truncated"
_PROXY_PAGE = b"<html><body><h1>502 Bad Gateway</h1><p>The proxy got no answer.</p></body></html>"
#: The kinds of fault that take no key of their own.
_FIXED_FAULTS: dict[str, Fault] = {
    "drop": Drop(),
    "cut": Drop(mid_body=True),
    "html": Body(_PROXY_PAGE, content_type="text/html"),
    "truncated": Body(b'{"id": "', content_type="application/json"),
}
#: The keys of a fault rule that only some kinds of fault take, and which.
_KEYS_OF_SOME_KINDS = {"retry_after": "an HTTP status", "seconds": "slow"}


def _http_status(kind: str) -> int | None:
    """The HTTP error status a fault's kind names, if it names one. ASCII digits only: `int`
    reads other digits too, and `"²"` is a digit it cannot read."""
    if kind.isascii() and kind.isdigit() and len(kind) == 3 and 400 <= int(kind) <= 599:
        return int(kind)
    return None


def _kind(value: Any) -> str:
    """A fault's kind, in any case."""
    kind = str(value).strip().lower()
    if not (_http_status(kind) or kind == "slow" or kind in _FIXED_FAULTS):
        raise ValueError(f"{kind!r} is not {_FAULT_KINDS}")
    return kind


_JOB_CHECKS: dict[str, Callable[[Any], Any]] = {
    "match": check.pattern,
    "duration": check.duration,
    "queued": check.seconds,
    "shape": shape,
    "outcome": check.outcome,
    "reach": check.percent,
    "share": check.share,
    "progress_as_string": check.flag,
    "missing": check.flag,
}
_FAULT_CHECKS: dict[str, Callable[[Any], Any]] = {
    "kind": _kind,
    "match": check.pattern,
    "share": check.share,
    "at": check.seconds,
    "for": check.seconds,
    "times": check.count,
    "retry_after": check.seconds,
    "seconds": check.seconds,
}
#: The options of a scenario, besides its rules.
_OPTION_CHECKS: dict[str, Callable[[Any], Any]] = {
    "port": check.port,
    "api_key": check.optional(check.api_key),
    "latency": check.seconds,
    "seed": check.whole,
    "auto_create_duration": check.optional(check.endless_seconds),
}
_SCENARIO_KEYS = ("jobs", "faults", *_OPTION_CHECKS)


def _with_pairs(where: str, fields: dict[str, Any], pairs: str) -> dict[str, Any]:
    """`fields` and the `key=value,...` of a rule from the command line; a bare key is a flag
    (`missing` is `missing=true`)."""
    for item in pairs.split(",") if pairs.strip() else ():
        key, equals, value = item.partition("=")
        if not key.strip():
            raise ScenarioError(f"{where}: expected key=value pairs separated by commas")
        fields[key.strip()] = value.strip() if equals else "true"
    return fields


def job_spec(text: str) -> dict[str, Any]:
    """A job rule from the command line, `PATTERN:key=value,...` (e.g.
    `fail-*:duration=5,outcome=FAILED,reach=40`), as the fields of a file's job rule."""
    pattern, _colon, rest = text.rpartition(":")
    if ":" not in text:
        if "=" in text:
            raise ScenarioError(
                f"--job {text!r}: expected PATTERN:key=value,... (e.g. '*:duration=5')"
            )
        pattern, rest = text, ""
    return _with_pairs(f"--job {text!r}", {"match": pattern}, rest)


def fault_spec(text: str) -> dict[str, Any]:
    """A fault rule from the command line, `KIND:key=value,...` (e.g. `503:share=0.05` or
    `503:at=5,for=2,retry_after=1`), as the fields of a file's fault rule."""
    kind, _colon, rest = text.partition(":")
    return _with_pairs(f"--fault {text!r}", {"kind": kind.strip()}, rest)


def load_scenario_file(path: str | Path) -> dict[str, Any]:
    """The contents of a scenario file: TOML when its name ends in `.toml`, else JSON.

    Raises:
        ScenarioError: the file cannot be read or parsed, or is not a table/object.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    toml = path.suffix.lower() == ".toml"
    try:
        text = raw.decode("utf-8-sig")
        data = tomllib.loads(text) if toml else json.loads(text)
    except ValueError as exc:  # UnicodeDecodeError and TOMLDecodeError are ValueErrors
        raise ScenarioError(f"{path}: not valid {'TOML' if toml else 'JSON'} ({exc})") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: expected a table of jobs and faults at the top")
    return data


def build_scenario(
    data: Mapping[str, Any] | None = None,
    *,
    source: str = "scenario",
    jobs: Iterable[tuple[str, Mapping[str, Any]]] = (),
    faults: Iterable[tuple[str, Mapping[str, Any]]] = (),
    **options: Any,
) -> Scenario:
    """A checked `Scenario` from a file's contents (`source` names it in errors), rules from the
    command line (each with its text, to quote; they come first, so they win over the file's),
    and options that win over the file's unless None.

    Raises:
        ScenarioError: anything that cannot be served, said with where it comes from.
    """
    data = dict(data or {})
    unknown = sorted(set(data) - set(_SCENARIO_KEYS))
    if unknown:
        raise ScenarioError(
            f"{source}: unknown key {unknown[0]!r}; expected {', '.join(_SCENARIO_KEYS)}"
        )
    job_rules = [(f"--job {text!r}", fields) for text, fields in jobs]
    fault_rules = [(f"--fault {text!r}", fields) for text, fields in faults]
    for key, rules in (("jobs", job_rules), ("faults", fault_rules)):
        listed = data.get(key, [])
        if not isinstance(listed, list):
            raise ScenarioError(f"{source}: {key} must be a list of tables")
        rules.extend((f"{source}: {key}[{index}]", item) for index, item in enumerate(listed))
    return Scenario(
        jobs=tuple(_job_rule(where, fields) for where, fields in job_rules),
        faults=tuple(_fault_rule(where, fields) for where, fields in fault_rules),
        **_options(source, data, options),
    )


def _options(source: str, data: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key, check_value in _OPTION_CHECKS.items():
        if given.get(key) is not None:
            options[key] = checked("--" + key.replace("_", "-"), given[key], check_value)
        elif key in data:
            options[key] = checked(f"{source}: {key}", data[key], check_value)
    return options


def _fields(where: str, raw: Any, checks: Mapping[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """The checked values of a rule's table."""
    if not isinstance(raw, Mapping):
        raise ScenarioError(f"{where}: expected a table of {', '.join(checks)}")
    unknown = [key for key in raw if key not in checks]
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key {unknown[0]!r}; expected one of {', '.join(checks)}"
        )
    return {key: checked(f"{where}: {key}", value, checks[key]) for key, value in raw.items()}


def _job_rule(where: str, raw: Any) -> JobRule:
    rule = JobRule(**_fields(where, raw, _JOB_CHECKS))
    if rule.queued > rule.duration[0]:
        raise ScenarioError(f"{where}: queued ({rule.queued:g} s) must not exceed the duration")
    return rule


def _fault_rule(where: str, raw: Any) -> FaultRule:
    fields = _fields(where, raw, _FAULT_CHECKS)
    if "kind" not in fields:
        raise ScenarioError(f"{where}: kind missing; expected {_FAULT_KINDS}")
    fault = _fault(where, fields)
    if not fields.keys() & {"share", "for", "times"}:
        raise ScenarioError(
            f"{where}: say which requests: share= (a fraction of them), times= (how many) "
            "or for= (every one for that many seconds from at=)"
        )
    return FaultRule(
        fault,
        match=fields.get("match", "*"),
        share=fields.get("share"),
        at=fields.get("at", 0.0),
        seconds=fields.get("for"),
        times=fields.get("times"),
    )


def _fault(where: str, fields: Mapping[str, Any]) -> Fault:
    """The fault of a rule's kind, with the key that only some kinds take: `retry_after`
    for an HTTP status, `seconds` for slow."""
    kind = fields["kind"]
    status = _http_status(kind)
    own_key = "retry_after" if status else "seconds" if kind == "slow" else None
    for key, kinds in _KEYS_OF_SOME_KINDS.items():
        if key != own_key and key in fields:
            raise ScenarioError(f"{where}: {key} is for {kinds}, not {kind!r}")
    if status:
        return HttpError(status, retry_after=fields.get("retry_after"))
    if kind != "slow":
        return _FIXED_FAULTS[kind]
    if not fields.get("seconds"):
        raise ScenarioError(f"{where}: slow needs seconds=, more than 0")
    return Slow(fields["seconds"])

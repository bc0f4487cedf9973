"""Jobs and faults of the fake service scripted as data: from `jobpoll fake-server`'s options
or a small JSON/TOML file, and for `jobpoll demo`.

A scenario is a list of job rules and a list of fault rules, checked whole before anything is
served, each error naming where it comes from (`--job 'x:duration=-5'`, `file.toml: jobs[2]`)
and what is allowed, rather than surfacing later as a 500 on every answer.

- A **job rule** says what the ids matching its pattern (`fnmatch`, case-sensitive) become at
  their first request: how long they run (a fixed time or a range, picked per id), the shape
  of their progress, the status they end in and the progress they end at, or that they do not
  exist (a 404). The first rule that matches an id wins; `share` applies a rule to that share
  of the matching ids only (picked by a hash of the id and the seed, so the same ids every
  run), the others going on to the next rules. An id that matches no rule is a 404, as the
  real service answers for an id it does not know (a typo fails against the fake as it will
  against the service), unless the scenario's `auto_create_duration` makes it a job that
  finishes after that many seconds; a last rule `*` makes such ids anything a rule can.
- A **fault rule** answers some requests with a fault instead of the job: a share of them
  (a random mix), a number of them, or all of them for a while (a burst), counted from the
  start of the service, for the ids matching its pattern.

The rules themselves are in `_rules`, the checks of each value in `_values`; this module reads
them, and names `ScriptedService` and `serve_until_stopped` (from `_service`) for the command
line that serves what it read.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from jobpoll.testing import _values as check
from jobpoll.testing._faults import Body, Drop, Fault, HttpError, Slow
from jobpoll.testing._rules import FaultRule, JobRule, Scenario
from jobpoll.testing._service import ScriptedService, serve_until_stopped

__all__ = [
    "ScenarioError",
    "ScriptedService",
    "build_scenario",
    "fault_spec",
    "job_spec",
    "load_scenario_file",
    "serve_until_stopped",
]


class ScenarioError(ValueError):
    """A job or fault rule, or a scenario file, that cannot be served; the message says where
    and what is allowed."""


_JOB_CHECKS: dict[str, Callable[[Any], Any]] = {
    "match": check.pattern,
    "duration": check.duration,
    "queued": check.seconds,
    "shape": check.shape_name,
    "outcome": check.outcome,
    "reach": check.percent,
    "share": check.share,
    "progress_as_string": check.flag,
    "missing": check.flag,
}
_JOB_KEYS = tuple(_JOB_CHECKS)
_FAULT_KEYS = ("kind", "match", "share", "at", "for", "times", "retry_after", "seconds")
_FAULT_KINDS = "an HTTP status from 400 to 599, drop, cut, slow, html or truncated"
#: The options of a scenario, besides its rules, and the check of each.
_OPTION_CHECKS: dict[str, Callable[[Any], Any]] = {
    "port": check.port,
    "api_key": check.api_key,
    "latency": check.seconds,
    "seed": check.whole,
    "auto_create_duration": check.optional_endless_seconds,
}
_SCENARIO_KEYS = ("jobs", "faults", *_OPTION_CHECKS)


# Reading rules --------------------------------------------------------------------------------


def _pairs(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in text.split(","):
        key, equals, value = item.partition("=")
        key = key.strip()
        if not key:
            raise ScenarioError("expected key=value pairs separated by commas")
        # A bare key is a flag: `missing` is `missing=true`.
        fields[key] = value.strip() if equals else "true"
    return fields


def job_spec(text: str) -> dict[str, Any]:
    """A job rule from the command line, `PATTERN:key=value,...` (e.g.
    `fail-*:duration=5,outcome=FAILED,reach=40`), as the fields of a file's job rule."""
    pattern, colon, rest = text.rpartition(":")
    if not colon:
        if "=" in text:
            raise ScenarioError(
                f"--job {text!r}: expected PATTERN:key=value,... (e.g. '*:duration=5')"
            )
        pattern, rest = text, ""
    fields: dict[str, Any] = {"match": pattern}
    if rest.strip():
        fields.update(_pairs(rest))
    return fields


def fault_spec(text: str) -> dict[str, Any]:
    """A fault rule from the command line, `KIND:key=value,...` (e.g. `503:share=0.05` or
    `503:at=5,for=2,retry_after=1`), as the fields of a file's fault rule."""
    kind, _colon, rest = text.partition(":")
    fields: dict[str, Any] = {"kind": kind.strip()}
    if rest.strip():
        fields.update(_pairs(rest))
    return fields


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
    try:
        text = raw.decode("utf-8-sig")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError) as exc:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise ScenarioError(f"{path}: not valid {kind} ({exc})") from None
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
    command line (each with the text it came from, to quote), and options that override the
    file's (`port`, `api_key`, `latency`, `seed`, `auto_create_duration`; None leaves the
    file's).

    Command-line rules come first: they win over the file's for the ids both match.

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
    """The scenario's options: each given one (not None), else the file's, else the default."""
    options: dict[str, Any] = {}
    for key, check_value in _OPTION_CHECKS.items():
        if given.get(key) is not None:  # an option wins over the file
            option = "--" + key.replace("_", "-")
            options[key] = _checked(option, "", given[key], check_value)
        elif key in data:
            options[key] = _checked(f"{source}:", key, data[key], check_value)
    return options


def _checked(where: str, key: str, value: Any, check_value: Callable[[Any], Any]) -> Any:
    try:
        return check_value(value)
    except (ValueError, TypeError) as exc:
        what = f"{where} {key}" if where.endswith(":") else f"{where}: {key}" if key else where
        raise ScenarioError(f"{what} {exc}") from None


def _fields(where: str, fields: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(fields, Mapping):
        raise ScenarioError(f"{where}: expected a table of {', '.join(allowed)}")
    unknown = [key for key in fields if key not in allowed]
    if unknown:
        raise ScenarioError(
            f"{where}: unknown key {unknown[0]!r}; expected one of {', '.join(allowed)}"
        )
    return dict(fields)


def _job_rule(where: str, raw: Any) -> JobRule:
    fields = _fields(where, raw, _JOB_KEYS)
    values = {key: _checked(where, key, value, _JOB_CHECKS[key]) for key, value in fields.items()}
    rule = JobRule(**values)
    if rule.queued > rule.duration[0]:
        raise ScenarioError(f"{where}: queued ({rule.queued:g} s) must not exceed the duration")
    return rule


def _fault_rule(where: str, raw: Any) -> FaultRule:
    fields = _fields(where, raw, _FAULT_KEYS)
    if "kind" not in fields:
        raise ScenarioError(f"{where}: kind missing; expected {_FAULT_KINDS}")
    kind = str(fields.pop("kind")).strip().lower()
    fault = _fault(where, kind, fields)
    share = _checked(where, "share", fields.get("share"), check.optional_share)
    at = _checked(where, "at", fields.get("at", 0.0), check.seconds)
    lasting = _checked(where, "for", fields.get("for"), check.optional_seconds)
    times = _checked(where, "times", fields.get("times"), check.optional_count)
    if share is None and lasting is None and times is None:
        raise ScenarioError(
            f"{where}: say which requests: share= (a fraction of them), times= (how many) "
            "or for= (every one for that many seconds from at=)"
        )
    match = _checked(where, "match", fields.get("match", "*"), check.pattern)
    return FaultRule(fault, kind, match, share, at, lasting, times)


def _fault(where: str, kind: str, fields: Mapping[str, Any]) -> Fault:
    """The fault of a rule's `kind`, with the key that only some kinds take: `retry_after`
    for an HTTP status, `seconds` for slow."""
    status = _http_status(kind)
    own_key = "retry_after" if status else "seconds" if kind == "slow" else None
    if own_key is None and kind not in _FIXED_FAULTS:
        raise ScenarioError(f"{where}: kind {kind!r} is not {_FAULT_KINDS}")
    for key, kinds in _KEYS_OF_SOME_KINDS.items():
        if key != own_key and fields.get(key) is not None:
            raise ScenarioError(f"{where}: {key} is for {kinds}, not {kind!r}")
    if own_key is None:
        return _FIXED_FAULTS[kind]
    value = _checked(where, own_key, fields.get(own_key), check.optional_seconds)
    if status:
        return HttpError(status, retry_after=value)
    if not value:
        raise ScenarioError(f"{where}: slow needs seconds=, more than 0")
    return Slow(value)


def _http_status(kind: str) -> int | None:
    """The HTTP error status a fault's kind names, if it names one. ASCII digits only: `int`
    reads other digits too, and `"²"` is a digit it cannot read."""
    if kind.isascii() and kind.isdigit() and len(kind) == 3 and 400 <= int(kind) <= 599:
        return int(kind)
    return None


#: The keys of a fault rule that only some kinds of fault take, and which.
_KEYS_OF_SOME_KINDS = {"retry_after": "an HTTP status", "seconds": "slow"}
_PROXY_PAGE = b"<html><body><h1>502 Bad Gateway</h1><p>The proxy got no answer.</p></body></html>"
#: The kinds of fault that take no key of their own.
_FIXED_FAULTS: dict[str, Fault] = {
    "drop": Drop(),
    "cut": Drop(mid_body=True),
    "html": Body(_PROXY_PAGE, content_type="text/html"),
    "truncated": Body(b'{"id": "', content_type="application/json"),
}

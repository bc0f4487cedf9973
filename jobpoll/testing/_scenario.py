"""A `Scenario` read from `jobpoll fake-server`'s options and a JSON/TOML file, or given by
`jobpoll demo`, and the checks of the values that make it (also of `FakeJobsService`'s
arguments): every value checked before anything is served, a refusal naming where the value
comes from (`--job 'x:duration=-5'`, `file.toml: jobs[2]`) and what is allowed."""

from __future__ import annotations

import contextlib
import json
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from jobpoll._config import check_api_key
from jobpoll._errors import ConfigurationError
from jobpoll.testing._faults import Body, Drop, Fault, HttpError, RateLimit, Slow
from jobpoll.testing._rules import OUTCOMES, FaultRule, JobRule, Scenario, shape

_T = TypeVar("_T")
_N = TypeVar("_N", int, float)


class ScenarioError(ValueError):
    """A value, a rule or a scenario file that cannot be served; the message says where and
    what is allowed."""


def checked(where: str, value: Any, check: Callable[[Any], _T], *, text: bool = True) -> _T:
    """`check(value)`, its refusal a `ScenarioError` that names `where` the value comes from
    (`--port`, `--job 'x:reach=200': reach`); with `text=False` (Python's API) a text is no
    number."""
    if not text and isinstance(value, str):
        raise ScenarioError(f"{where} must be a number, got {value!r}")
    try:
        return check(value)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise ScenarioError(f"{where} {exc}") from None


def optional(check: Callable[[Any], _T]) -> Callable[[Any], _T | None]:
    def check_optional(value: Any) -> _T | None:
        return None if value is None else check(value)

    return check_optional


def number(value: Any) -> float:
    """A number, or a text that is one (`"2.5"`); never a boolean. A whole number too large
    for a float (a 400-digit `--port`) is refused as too large, not an `OverflowError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"must be a number, got {value!r}")
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"must be a number, got {value!r}") from None
    except OverflowError:
        raise ValueError("must be a number, got one too large to use") from None


def duration(value: Any) -> tuple[float, float]:
    """How long a job runs: one number, `"LOW..HIGH"` or `[LOW, HIGH]` (picked per id);
    `inf` is a job that never ends."""
    if isinstance(value, str) and ".." in value:
        parts: list[Any] = value.split("..", 1)
    elif isinstance(value, list):
        parts = value
    else:
        parts = [value, value]
    if len(parts) != 2:
        raise ValueError(f"must be seconds, or LOW..HIGH, got {value!r}")
    low, high = (number(part) for part in parts)
    if not (0 <= low <= high <= math.inf):
        raise ValueError(
            f"must be seconds, 0 or more (inf: never ends), or LOW..HIGH, got {value!r}"
        )
    return low, high


def whole(value: Any) -> int:
    """A whole number (`3`, `3.0`, `"3"`), of any size."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        return value
    result = number(value)
    if not result.is_integer():
        raise ValueError(f"must be a whole number, got {value!r}")
    return int(result)


def _within(
    convert: Callable[[Any], _N], fits: Callable[[_N], bool], allowed: str
) -> Callable[[Any], _N]:
    """The check of a number in a range that `fits` tests and `allowed` names."""

    def check(value: Any) -> _N:
        result = convert(value)
        if not fits(result):
            raise ValueError(f"must be {allowed}, got {value!r}")
        return result

    return check


seconds = _within(number, lambda value: 0 <= value < math.inf, "a number of seconds, 0 or more")
endless_seconds = _within(
    number, lambda value: 0 <= value <= math.inf, "a number of seconds, 0 or more (inf: never ends)"
)
share = _within(number, lambda value: 0 < value <= 1, "a fraction above 0, up to 1")
count = _within(whole, lambda value: value >= 1, "1 or more")
port = _within(whole, lambda value: 0 <= value <= 65535, "from 0 to 65535")
percent = _within(whole, lambda value: 0 <= value <= 100, "a whole percent from 0 to 100")


def pattern(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty pattern of ids (* and ? match), got {value!r}")
    return value


def outcome(value: Any) -> str:
    status = str(value).strip().upper()
    if status not in OUTCOMES:
        raise ValueError(f"must be one of {', '.join(OUTCOMES)}, got {value!r}")
    return status


def flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def api_key(value: Any) -> str:
    """The key the service accepts: one a `JobsClient` can send."""
    try:
        return check_api_key(value)
    except ConfigurationError as exc:
        raise ValueError(f"is refused: {exc}") from None


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
    kind = str(value).strip().lower()
    if not (_http_status(kind) or kind == "slow" or kind in _FIXED_FAULTS):
        raise ValueError(f"{kind!r} is not {_FAULT_KINDS}")
    return kind


_JOB_CHECKS: dict[str, Callable[[Any], Any]] = {
    "match": pattern,
    "duration": duration,
    "queued": seconds,
    "shape": shape,
    "outcome": outcome,
    "reach": percent,
    "share": share,
    "progress_as_string": flag,
    "missing": flag,
}
_FAULT_CHECKS: dict[str, Callable[[Any], Any]] = {
    "kind": _kind,
    "match": pattern,
    "share": share,
    "at": seconds,
    "for": seconds,
    "times": count,
    "retry_after": seconds,
    "seconds": seconds,
}


def rate(value: Any) -> float:
    result = number(value)
    if not 0 < result < math.inf:
        raise ValueError(f"must be a number of requests a second above 0, got {value!r}")
    return result


def burst(value: Any) -> float:
    result = number(value)
    if not 1 <= result < math.inf:
        raise ValueError(f"must be a number of requests, 1 or more, got {value!r}")
    return result


def throttle_status(value: Any) -> int:
    status = _http_status(str(value).strip())
    if status is None:
        raise ValueError(f"must be an HTTP status from 400 to 599, got {value!r}")
    return status


def _no_header_or_seconds(value: Any) -> float | None:
    return None if str(value).strip().lower() == "none" else seconds(value)


_RATE_LIMIT_CHECKS: dict[str, Callable[[Any], Any]] = {
    "rate": rate,
    "burst": burst,
    "retry_after": _no_header_or_seconds,
    "status": throttle_status,
}


def _rate_limit(where: str, raw: Any) -> RateLimit:
    fields = _fields(where, raw, _RATE_LIMIT_CHECKS)
    if "rate" not in fields:
        raise ScenarioError(f"{where}: rate is missing (requests a second)")
    return RateLimit(**fields)


_OPTION_CHECKS: dict[str, Callable[[Any], Any]] = {
    "port": port,
    "api_key": optional(api_key),
    "latency": seconds,
    "seed": whole,
    "auto_create_duration": optional(endless_seconds),
}
_SCENARIO_KEYS = ("jobs", "faults", "rate_limit", *_OPTION_CHECKS)


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
    match, _colon, rest = text.rpartition(":")
    if ":" not in text:
        if "=" in text:
            raise ScenarioError(
                f"--job {text!r}: expected PATTERN:key=value,... (e.g. '*:duration=5')"
            )
        match, rest = text, ""
    return _with_pairs(f"--job {text!r}", {"match": match}, rest)


def fault_spec(text: str) -> dict[str, Any]:
    """A fault rule from the command line, `KIND:key=value,...` (e.g. `503:share=0.05` or
    `503:at=5,for=2,retry_after=1`), as the fields of a file's fault rule."""
    kind, _colon, rest = text.partition(":")
    return _with_pairs(f"--fault {text!r}", {"kind": kind.strip()}, rest)


def rate_limit_spec(text: str) -> dict[str, Any]:
    """A rate limit from the command line, `RATE[:key=value,...]` (e.g. `50:burst=20` or
    `5:retry_after=none,status=503`), as the fields of a file's `rate_limit` table."""
    given, _colon, rest = text.partition(":")
    return _with_pairs(f"--rate-limit {text!r}", {"rate": given.strip()}, rest)


def load_scenario_file(path: str | Path) -> dict[str, Any]:
    """The table of a scenario file, TOML when its name ends in `.toml`, else JSON; a
    `ScenarioError` when it cannot be read or parsed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    toml = path.suffix.lower() == ".toml"
    try:
        text = raw.decode("utf-8-sig")
        data = tomllib.loads(text) if toml else json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError, TOMLDecodeError too
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
    rate_limit: tuple[str, Mapping[str, Any]] | None = None,
    **options: Any,
) -> Scenario:
    """A checked `Scenario` from a file's contents (`source` names it in errors), rules from the
    command line (each with its text, to quote; they come first, so they win over the file's),
    a rate limit from it (with its text) that wins over the file's, and options that win over
    the file's unless None; a `ScenarioError` where it cannot be."""
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
    if rate_limit is not None:
        limit: RateLimit | None = _rate_limit(f"--rate-limit {rate_limit[0]!r}", rate_limit[1])
    elif "rate_limit" in data:
        limit = _rate_limit(f"{source}: rate_limit", data["rate_limit"])
    else:
        limit = None
    return Scenario(
        jobs=tuple(_job_rule(where, fields) for where, fields in job_rules),
        faults=tuple(_fault_rule(where, fields) for where, fields in fault_rules),
        rate_limit=limit,
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

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
  run), the others going on to the next rules. Ids that match no rule run for
  `DEFAULT_DURATION` seconds and finish.
- A **fault rule** answers some requests with a fault instead of the job: a share of them
  (a random mix), a number of them, or all of them for a while (a burst), counted from the
  start of the service, for the ids matching its pattern.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import math
import random
import signal
import time
import tomllib
import zlib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from jobpoll._models import JobStatus
from jobpoll.testing._faults import Body, Drop, Fault, HttpError, Slow
from jobpoll.testing._service import FakeJobsService, ProgressCurve, _Script

__all__ = [
    "DEFAULT_DURATION",
    "FaultRule",
    "JobRule",
    "Scenario",
    "ScenarioError",
    "ScriptedService",
    "build_scenario",
    "fault_spec",
    "job_spec",
    "load_scenario_file",
    "serve_until_stopped",
]

#: How long an id that matches no job rule runs before it finishes, in seconds.
DEFAULT_DURATION = 10.0

#: The statuses a scripted job may end in.
OUTCOMES = tuple(
    status.value for status in JobStatus if status.is_terminal and status is not JobStatus.UNKNOWN
)


class ScenarioError(ValueError):
    """A job or fault rule, or a scenario file, that cannot be served; the message says where
    and what is allowed."""


# Progress shapes ------------------------------------------------------------------------------


def _linear(fraction: float) -> float:
    return 100 * fraction


def _ease_in(fraction: float) -> float:
    return 100 * fraction * fraction


def _ease_out(fraction: float) -> float:
    return 100 * (1 - (1 - fraction) ** 2)


def _steps(step: int) -> ProgressCurve:
    def curve(fraction: float) -> float:
        return step * math.floor(100 * fraction / step + 1e-9)

    return curve


#: The progress shapes by name; `steps-N` (N from 1 to 100) moves in steps of N percent.
SHAPES: dict[str, ProgressCurve | None] = {
    "linear": _linear,
    "ease-in": _ease_in,
    "ease-out": _ease_out,
    "none": None,
}


def _shape(name: str) -> ProgressCurve | None:
    if name in SHAPES:
        return SHAPES[name]
    step = name.removeprefix("steps-")
    if step != name and step.isdigit() and 1 <= int(step) <= 100:
        return _steps(int(step))
    raise ValueError(f"must be one of {', '.join(SHAPES)} or steps-N (N from 1 to 100)")


def _scaled(curve: ProgressCurve | None, reach: int) -> ProgressCurve | None:
    if curve is None or reach == 100:
        return curve

    def scaled(fraction: float) -> float:
        return reach * curve(fraction) / 100

    return scaled


# Rules ----------------------------------------------------------------------------------------


@attrs.frozen
class JobRule:
    """What the ids matching `match` become at their first request."""

    match: str = "*"
    #: Seconds from the first request to the end: the least and the most (equal: fixed).
    duration: tuple[float, float] = (DEFAULT_DURATION, DEFAULT_DURATION)
    queued: float = 0.0
    shape: str = "linear"
    outcome: str = JobStatus.FINISHED.value
    #: The progress reached at the end; 100 for a job that finishes.
    reach: int = 100
    share: float = 1.0
    progress_as_string: bool = False
    missing: bool = False

    def applies_to(self, job_id: str, seed: int) -> bool:
        """Whether this rule decides what `job_id` becomes."""
        if not fnmatch.fnmatchcase(job_id, self.match):
            return False
        return self.share >= 1.0 or _fraction(seed, "share", self.match, job_id) < self.share

    def script(self, job_id: str, seed: int) -> dict[str, Any]:
        """The arguments of `FakeJobsService.add_job` for `job_id`."""
        low, high = self.duration
        duration = low
        if high > low:
            duration += (high - low) * _fraction(seed, "duration", self.match, job_id)
        reach = 100 if self.outcome == JobStatus.FINISHED.value else self.reach
        return {
            "duration": duration,
            "queued": min(self.queued, duration),
            "progress": _scaled(_shape(self.shape), reach),
            "final_status": self.outcome,
            "progress_as_string": self.progress_as_string,
        }


def _fraction(seed: int, *parts: str) -> float:
    """A number in [0, 1) that depends only on its arguments: the same ids get the same
    durations and outcomes on every run with the same seed."""
    key = "\0".join((str(seed), *parts)).encode("utf-8", "surrogatepass")
    return zlib.crc32(key) / 2**32


@attrs.frozen
class FaultRule:
    """Requests answered with `fault` instead of the job: a `share` of them, `times` of them,
    or all of them from `at` for `seconds` (a burst), for ids matching `match`."""

    fault: Fault
    label: str
    match: str = "*"
    share: float | None = None
    at: float = 0.0
    seconds: float | None = None
    times: int | None = None

    def active(self, elapsed: float) -> bool:
        """Whether the rule answers requests `elapsed` seconds after the service started."""
        if elapsed < self.at:
            return False
        return self.seconds is None or elapsed < self.at + self.seconds


@attrs.frozen
class Scenario:
    """Everything `jobpoll fake-server` serves."""

    jobs: tuple[JobRule, ...] = ()
    faults: tuple[FaultRule, ...] = ()
    port: int = 0
    api_key: str | None = None
    latency: float = 0.0
    seed: int = 0

    def rule_for(self, job_id: str) -> JobRule:
        """The first rule that applies to `job_id`, else the default one."""
        for rule in self.jobs:
            if rule.applies_to(job_id, self.seed):
                return rule
        return _DEFAULT_RULE


_DEFAULT_RULE = JobRule()


class ScriptedService(FakeJobsService):
    """The fake service serving a `Scenario`: jobs made from its rules at their first request,
    and its faults mixed in (after any fault `inject`ed, which come first)."""

    def __init__(self, scenario: Scenario, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(
            api_key=scenario.api_key, port=scenario.port, latency=scenario.latency, clock=clock
        )
        self.scenario = scenario
        self._random = random.Random(scenario.seed)
        self._used = [0] * len(scenario.faults)
        self._origin = clock()

    async def start(self) -> None:
        """Start serving; fault times count from now."""
        await super().start()
        self._origin = self._clock()

    def _unknown_job(self, job_id: str) -> _Script | None:
        rule = self.scenario.rule_for(job_id)
        if rule.missing:
            return None
        self.add_job(job_id, **rule.script(job_id, self.scenario.seed))
        return self._jobs[job_id]

    def _next_fault(self, job_id: str | None) -> Fault | None:
        fault = super()._next_fault(job_id)
        if fault is not None or job_id is None or not self.scenario.faults:
            return fault
        elapsed = self._clock() - self._origin
        for index, rule in enumerate(self.scenario.faults):
            if (
                rule.active(elapsed)
                and (rule.times is None or self._used[index] < rule.times)
                and fnmatch.fnmatchcase(job_id, rule.match)
                and (rule.share is None or self._random.random() < rule.share)
            ):
                self._used[index] += 1
                return rule.fault
        return None


async def serve_until_stopped(service: FakeJobsService) -> None:
    """Serve until SIGINT or SIGTERM: print where (one JSON line, `{"base_url": ...,
    "api_key": ...}`) once listening, and the request counters (`{"requests": ...,
    "peak_in_flight": ...}`) once stopped, each flushed at once for a reading process."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with service:
            print(
                json.dumps({"base_url": service.base_url, "api_key": service.api_key}), flush=True
            )
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    counters = {"requests": service.request_count(), "peak_in_flight": service.peak_in_flight}
    print(json.dumps(counters), flush=True)


# Reading rules --------------------------------------------------------------------------------

_JOB_KEYS = (
    "match",
    "duration",
    "queued",
    "shape",
    "outcome",
    "reach",
    "share",
    "progress_as_string",
    "missing",
)
_FAULT_KEYS = ("kind", "match", "share", "at", "for", "times", "retry_after", "seconds")
_FAULT_KINDS = "an HTTP status from 400 to 599, drop, cut, slow, html or truncated"
_SCENARIO_KEYS = ("jobs", "faults", "port", "api_key", "latency", "seed")


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
    file's (`port`, `api_key`, `latency`, `seed`; None leaves the file's).

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
    settings: dict[str, Any] = {"port": 0, "api_key": None, "latency": 0.0, "seed": 0}
    checks: dict[str, Callable[[Any], Any]] = {
        "port": _port,
        "api_key": _api_key,
        "latency": _seconds,
        "seed": _whole,
    }
    for key, check in checks.items():
        if key in data:
            settings[key] = _checked(f"{source}:", key, data[key], check)
        if options.get(key) is not None:  # an option wins over the file
            option = "--" + key.replace("_", "-")
            settings[key] = _checked(option, "", options[key], check)
    return Scenario(
        jobs=tuple(_job_rule(where, fields) for where, fields in job_rules),
        faults=tuple(_fault_rule(where, fields) for where, fields in fault_rules),
        **settings,
    )


def _checked(where: str, key: str, value: Any, check: Callable[[Any], Any]) -> Any:
    try:
        return check(value)
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
    checks: dict[str, Callable[[Any], Any]] = {
        "match": _pattern,
        "duration": _duration,
        "queued": _seconds,
        "shape": _shape_name,
        "outcome": _outcome,
        "reach": _percent,
        "share": _share,
        "progress_as_string": _flag,
        "missing": _flag,
    }
    values = {key: _checked(where, key, value, checks[key]) for key, value in fields.items()}
    rule = JobRule(**values)
    if rule.queued > rule.duration[0]:
        raise ScenarioError(f"{where}: queued ({rule.queued:g} s) must not exceed the duration")
    return rule


def _fault_rule(where: str, raw: Any) -> FaultRule:
    fields = _fields(where, raw, _FAULT_KEYS)
    if "kind" not in fields:
        raise ScenarioError(f"{where}: kind missing; expected {_FAULT_KINDS}")
    kind = str(fields.pop("kind")).strip().lower()
    retry_after = _checked(where, "retry_after", fields.pop("retry_after", None), _optional_seconds)
    seconds = _checked(where, "seconds", fields.pop("seconds", None), _optional_seconds)
    fault: Fault
    if kind.isdigit() and 400 <= int(kind) <= 599:
        fault = HttpError(int(kind), retry_after=retry_after)
    elif retry_after is not None:
        raise ScenarioError(f"{where}: retry_after is for an HTTP status, not {kind!r}")
    elif kind == "slow":
        if not seconds:
            raise ScenarioError(f"{where}: slow needs seconds=, more than 0")
        fault = Slow(seconds)
    elif kind in ("drop", "cut"):
        fault = Drop(mid_body=kind == "cut")
    elif kind == "html":
        fault = Body(_PROXY_PAGE, content_type="text/html")
    elif kind == "truncated":
        fault = Body(b'{"id": "', content_type="application/json")
    else:
        raise ScenarioError(f"{where}: kind {kind!r} is not {_FAULT_KINDS}")
    if seconds is not None and kind != "slow":
        raise ScenarioError(f"{where}: seconds is for slow, not {kind!r}")
    share = _checked(where, "share", fields.get("share"), _optional_share)
    at = _checked(where, "at", fields.get("at", 0.0), _seconds)
    lasting = _checked(where, "for", fields.get("for"), _optional_seconds)
    times = _checked(where, "times", fields.get("times"), _optional_count)
    if share is None and lasting is None and times is None:
        raise ScenarioError(
            f"{where}: say which requests: share= (a fraction of them), times= (how many) "
            "or for= (every one for that many seconds from at=)"
        )
    match = _checked(where, "match", fields.get("match", "*"), _pattern)
    return FaultRule(fault, kind, match, share, at, lasting, times)


_PROXY_PAGE = b"<html><body><h1>502 Bad Gateway</h1><p>The proxy got no answer.</p></body></html>"


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError(f"must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"must be a number, got {value!r}") from None
    if not isinstance(value, (int, float)):
        raise TypeError(f"must be a number, got {value!r}")
    return float(value)


def _seconds(value: Any) -> float:
    seconds = _number(value)
    if not 0 <= seconds < math.inf:
        raise ValueError(f"must be a number of seconds, 0 or more, got {value!r}")
    return seconds


def _optional_seconds(value: Any) -> float | None:
    return None if value is None else _seconds(value)


def _duration(value: Any) -> tuple[float, float]:
    # One number, "LOW..HIGH", or [LOW, HIGH]; "inf" is a job that never ends.
    if isinstance(value, str) and ".." in value:
        parts: list[Any] = value.split("..", 1)
    elif isinstance(value, list):
        parts = value
    else:
        parts = [value, value]
    if len(parts) != 2:
        raise ValueError(f"must be seconds, or LOW..HIGH, got {value!r}")
    low, high = (_number(part) for part in parts)
    if not (0 <= low <= high <= math.inf):
        raise ValueError(
            f"must be seconds, 0 or more (inf: never ends), or LOW..HIGH, got {value!r}"
        )
    return low, high


def _share(value: Any) -> float:
    share = _number(value)
    if not 0 < share <= 1:
        raise ValueError(f"must be a fraction above 0, up to 1, got {value!r}")
    return share


def _optional_share(value: Any) -> float | None:
    return None if value is None else _share(value)


def _whole(value: Any) -> int:
    number = _number(value)
    if not number.is_integer():
        raise ValueError(f"must be a whole number, got {value!r}")
    return int(number)


def _optional_count(value: Any) -> int | None:
    if value is None:
        return None
    count = _whole(value)
    if count < 1:
        raise ValueError(f"must be 1 or more, got {value!r}")
    return count


def _port(value: Any) -> int:
    port = _whole(value)
    if not 0 <= port <= 65535:
        raise ValueError(f"must be from 0 to 65535, got {value!r}")
    return port


def _percent(value: Any) -> int:
    percent = _whole(value)
    if not 0 <= percent <= 100:
        raise ValueError(f"must be a whole percent from 0 to 100, got {value!r}")
    return percent


def _pattern(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty pattern of ids (* and ? match), got {value!r}")
    return value


def _shape_name(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a name, got {value!r}")
    _shape(value)
    return value


def _outcome(value: Any) -> str:
    status = str(value).strip().upper()
    if status not in OUTCOMES:
        raise ValueError(f"must be one of {', '.join(OUTCOMES)}, got {value!r}")
    return status


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def _api_key(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or not (value.isascii() and value.isprintable()):
        raise ValueError("must be printable ASCII text, not empty")
    if value != value.strip():
        raise ValueError("must not begin or end with white space")
    return value

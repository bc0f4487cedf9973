"""The values of the fake service's options and a scenario's rules, as they come from a
command line (text), a file (text, numbers, booleans) or `FakeJobsService`'s arguments: one
function checks and converts each kind of value, and says what is allowed when it refuses."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any, TypeVar

from jobpoll.testing._rules import OUTCOMES

_T = TypeVar("_T")
_N = TypeVar("_N", int, float)


class ScenarioError(ValueError):
    """A value, a rule or a scenario file that cannot be served; the message says where and
    what is allowed."""


def checked(where: str, value: Any, check: Callable[[Any], _T]) -> _T:
    """`check(value)`, its refusal a `ScenarioError` that names `where` the value comes from
    (`--port`, `--job 'x:reach=200': reach`)."""
    try:
        return check(value)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise ScenarioError(f"{where} {exc}") from None


def optional(check: Callable[[Any], _T]) -> Callable[[Any], _T | None]:
    """`check`, letting None (a value not given) through."""

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
    """A pattern of ids (`fnmatch`: `*` and `?` match), not empty."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty pattern of ids (* and ? match), got {value!r}")
    return value


def outcome(value: Any) -> str:
    """A status a job may end in, in any case."""
    status = str(value).strip().upper()
    if status not in OUTCOMES:
        raise ValueError(f"must be one of {', '.join(OUTCOMES)}, got {value!r}")
    return status


def flag(value: Any) -> bool:
    """A boolean, or true/false, yes/no, 1/0 as text."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise ValueError(f"must be true or false, got {value!r}")


def api_key(value: Any) -> str:
    """The key the service accepts: printable ASCII, not empty, no white space around it."""
    if not isinstance(value, str) or not value or not (value.isascii() and value.isprintable()):
        raise ValueError("must be printable ASCII text, not empty")
    if value != value.strip():
        raise ValueError("must not begin or end with white space")
    return value

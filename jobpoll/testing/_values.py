"""The values of a scenario's rules and options, as they come from a command line (text) or a
file (text, numbers, booleans): each checked and converted by one function, which says what is
allowed when it refuses (a `ValueError` or `TypeError`, quoted by the scenario's reader with
where the value came from)."""

from __future__ import annotations

import math
from typing import Any

from jobpoll.testing._rules import OUTCOMES, shape

__all__ = [
    "api_key",
    "duration",
    "flag",
    "number",
    "optional_count",
    "optional_endless_seconds",
    "optional_seconds",
    "optional_share",
    "outcome",
    "pattern",
    "percent",
    "port",
    "seconds",
    "shape_name",
    "share",
    "whole",
]


def number(value: Any) -> float:
    """A number, or a text that is one (`"2.5"`); never a boolean. A whole number too large
    for a float (a 400-digit `--port`) is refused as too large, not an `OverflowError`."""
    if isinstance(value, bool):
        raise TypeError(f"must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"must be a number, got {value!r}") from None
    if not isinstance(value, (int, float)):
        raise TypeError(f"must be a number, got {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError("must be a number, got one too large to use") from None


def seconds(value: Any) -> float:
    """A number of seconds, 0 or more, finite."""
    result = number(value)
    if not 0 <= result < math.inf:
        raise ValueError(f"must be a number of seconds, 0 or more, got {value!r}")
    return result


def optional_seconds(value: Any) -> float | None:
    """`seconds`, or None for a value not given."""
    return None if value is None else seconds(value)


def optional_endless_seconds(value: Any) -> float | None:
    """A number of seconds, 0 or more, `inf` (never ends) too; or None for a value not given."""
    if value is None:
        return None
    result = number(value)
    if not 0 <= result <= math.inf:
        raise ValueError(f"must be a number of seconds, 0 or more (inf: never ends), got {value!r}")
    return result


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


def share(value: Any) -> float:
    """A fraction above 0, up to 1."""
    result = number(value)
    if not 0 < result <= 1:
        raise ValueError(f"must be a fraction above 0, up to 1, got {value!r}")
    return result


def optional_share(value: Any) -> float | None:
    """`share`, or None for a value not given."""
    return None if value is None else share(value)


def whole(value: Any) -> int:
    """A whole number (`3`, `3.0`, `"3"`), of any size."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    result = number(value)
    if not result.is_integer():
        raise ValueError(f"must be a whole number, got {value!r}")
    return int(result)


def optional_count(value: Any) -> int | None:
    """A whole number, 1 or more, or None for a value not given."""
    if value is None:
        return None
    count = whole(value)
    if count < 1:
        raise ValueError(f"must be 1 or more, got {value!r}")
    return count


def port(value: Any) -> int:
    """A TCP port, 0 (any free one) to 65535."""
    result = whole(value)
    if not 0 <= result <= 65535:
        raise ValueError(f"must be from 0 to 65535, got {value!r}")
    return result


def percent(value: Any) -> int:
    """A whole percent from 0 to 100."""
    result = whole(value)
    if not 0 <= result <= 100:
        raise ValueError(f"must be a whole percent from 0 to 100, got {value!r}")
    return result


def pattern(value: Any) -> str:
    """A pattern of ids (`fnmatch`: `*` and `?` match), not empty."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty pattern of ids (* and ? match), got {value!r}")
    return value


def shape_name(value: Any) -> str:
    """The name of a progress shape (see `SHAPES`)."""
    if not isinstance(value, str):
        raise TypeError(f"must be a name, got {value!r}")
    shape(value)
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


def api_key(value: Any) -> str | None:
    """The key the service accepts: printable ASCII, not empty, no white space around it;
    None for a random one."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or not (value.isascii() and value.isprintable()):
        raise ValueError("must be printable ASCII text, not empty")
    if value != value.strip():
        raise ValueError("must not begin or end with white space")
    return value

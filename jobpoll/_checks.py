"""Checks of the options a caller passes, shared by every module that takes them."""

from __future__ import annotations

import math

from jobpoll._errors import ConfigurationError

__all__ = ["check_not_negative", "check_positive"]


def check_positive(name: str, value: object, *, whole: bool = False) -> None:
    """Refuse anything but a positive, finite number of seconds (a whole number: `whole`)."""
    kind = int if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not 0 < value < math.inf:
        noun = "a positive whole number" if whole else "a positive number of seconds"
        raise ConfigurationError(f"{name} must be {noun}, got {value!r}")


def check_not_negative(name: str, value: object) -> None:
    """Refuse anything but a finite number of seconds, 0 or more."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ConfigurationError(f"{name} must be a number of seconds, 0 or more, got {value!r}")

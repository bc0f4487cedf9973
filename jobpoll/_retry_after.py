"""Reading a `Retry-After` header: how long a server asks to be left alone."""

from __future__ import annotations

import math
import time
from email.utils import parsedate_to_datetime


def parse_retry_after(value: str | None, date: str | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (seconds or an HTTP-date), or None.

    An HTTP-date is measured against the response's own `Date` header when there is one, so a
    skewed local clock does not stretch or shrink the wait; a date in the past means 0. Any
    value a server may send gives a finite number of seconds, 0 or more, or None (unreadable:
    then the policy's own schedule applies): never an exception.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if 0 <= seconds < math.inf else None
    moment = _http_date(value)
    if moment is None:
        return None
    now = _http_date(date) if date else None
    if now is None:
        now = time.time()
    seconds = moment - now
    return max(0.0, seconds) if seconds < math.inf else None


def _http_date(value: str) -> float | None:
    """The POSIX time of an HTTP-date, or None when it is no date the calendar holds."""
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        # OverflowError: a year too large for the calendar (or for a C long).
        return None

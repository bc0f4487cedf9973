"""Scale waits out over worker processes with SAQ, an asyncio job queue on Redis.

Needs the `saq` extra (`pip install 'jobpoll[saq]'`); `import jobpoll` never imports it.
Without it, importing this module is a `ModuleNotFoundError` that says so. See the guide
"Workers on SAQ" (docs/guides/saq.md).
"""

from __future__ import annotations


def _missing_from_the_extra(error: BaseException | None) -> str | None:
    """The package of the extra whose absence `error` reports, if that is what it reports.
    SAQ reports a missing redis as its own error, caused by the `ModuleNotFoundError`."""
    while error is not None and not isinstance(error, ModuleNotFoundError):
        error = error.__cause__
    package = str(getattr(error, "name", None)).partition(".")[0]
    return package if package in ("saq", "redis") else None


try:
    from jobpoll._errors import OutcomePending
    from jobpoll._saq import SaqWaits
    from jobpoll._saq_links import POLL_FUNCTION, load_result, result_to_json
    from jobpoll._saq_outcomes import Undelivered
    from jobpoll._saq_overview import QueueOverview
except Exception as exc:
    missing = _missing_from_the_extra(exc)
    if missing is None:
        raise
    raise ModuleNotFoundError(
        f"jobpoll.saq needs the saq extra ({missing} is missing): pip install 'jobpoll[saq]'",
        name=missing,
    ) from exc

__all__ = [
    "POLL_FUNCTION",
    "OutcomePending",
    "QueueOverview",
    "SaqWaits",
    "Undelivered",
    "load_result",
    "result_to_json",
]

"""jobpoll's metrics, through OpenTelemetry's API (the `otel` extra): a no-op unless the
application configures an SDK's `MeterProvider`, and nothing at all without the extra.

Each is recorded where its event is decided, so a lone wait, a fan-out and a SAQ worker
report the same names alike. By the client, which sends every poll (`JobsClient._send`):

- `jobpoll.polls` (counter, `{poll}`): polls by `jobpoll.poll.outcome`: `answered` (a job),
  `refused` (an error status) or `error` (no valid answer), and `error.type` (the jobpoll
  error's class, `RateLimited`, `TransportError`, ...) for the last two.
- `jobpoll.polls.throttled` (counter, `{poll}`): polls the service refused for its rate,
  by `http.response.status_code` (429, 503).
- `jobpoll.polls.active` (up-down counter, `{poll}`): polls sent and not back yet.

By the rules (`_rules`), which decide every wait's end whichever driver polls it:

- `jobpoll.waits.ended` (counter, `{wait}`): by `jobpoll.job.status` (the last one seen, if
  any) and `error.type` (the error that ended it, if not the job's own end).
- `jobpoll.wait.duration` (histogram, `s`): from the wait's first poll to its end, with the
  same attributes.

A poll in flight is a wait in flight: a wait has at most one poll out, and between two polls
it holds nothing (a SAQ wait is then a record in Redis, counted by `SaqWaits.overview()`).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, Protocol

from jobpoll._errors import ApiError, JobPollError
from jobpoll._models import Job
from jobpoll._version import __version__

try:
    from opentelemetry import metrics as _otel
except ImportError:  # the `otel` extra is not installed: every record is a no-op
    _otel = None  # type: ignore[assignment]


class _Adds(Protocol):
    def add(self, amount: int, attributes: Mapping[str, Any] | None = None) -> None: ...


class _Records(Protocol):
    def record(self, amount: float, attributes: Mapping[str, Any] | None = None) -> None: ...


class _Nothing:
    """Stands for every instrument without the `otel` extra."""

    def add(self, amount: int, attributes: Mapping[str, Any] | None = None) -> None:
        pass

    def record(self, amount: float, attributes: Mapping[str, Any] | None = None) -> None:
        pass


_polls: _Adds
_throttled: _Adds
_active: _Adds
_ended: _Adds
_duration: _Records
if _otel is None:
    _polls = _throttled = _active = _ended = _duration = _Nothing()
else:
    # A proxy until the application sets its provider, then the provider's own instruments.
    _meter = _otel.get_meter("jobpoll", __version__)
    _polls = _meter.create_counter(
        "jobpoll.polls", unit="{poll}", description="Polls of a job's status, by outcome."
    )
    _throttled = _meter.create_counter(
        "jobpoll.polls.throttled",
        unit="{poll}",
        description="Polls the service refused for its rate limit (429, 503).",
    )
    _active = _meter.create_up_down_counter(
        "jobpoll.polls.active",
        unit="{poll}",
        description="Polls sent and not answered yet: the waits with a poll in flight.",
    )
    _ended = _meter.create_counter(
        "jobpoll.waits.ended", unit="{wait}", description="Waits ended, by how they ended."
    )
    _duration = _meter.create_histogram(
        "jobpoll.wait.duration",
        unit="s",
        description="Time from a wait's first poll to its outcome.",
    )

_ANSWERED = {"jobpoll.poll.outcome": "answered"}

P = ParamSpec("P")


def counts_polls(
    send: Callable[P, Awaitable[Job | JobPollError]],
) -> Callable[P, Awaitable[Job | JobPollError]]:
    """`send`, a poll that returns the job or the typed error it was turned into, counted in
    `jobpoll.polls` by that outcome, and in `jobpoll.polls.active` while it is out."""

    @functools.wraps(send)
    async def counted(*args: P.args, **kwargs: P.kwargs) -> Job | JobPollError:
        _active.add(1)
        try:
            outcome = await send(*args, **kwargs)
        finally:  # cancelled too: no longer out
            _active.add(-1)
        if isinstance(outcome, Job):
            _polls.add(1, _ANSWERED)
            return outcome
        refused = isinstance(outcome, ApiError)
        kind = {"jobpoll.poll.outcome": "refused" if refused else "error"}
        _polls.add(1, {**kind, "error.type": type(outcome).__name__})
        if isinstance(outcome, ApiError) and outcome.throttles:
            _throttled.add(1, {"http.response.status_code": outcome.http_status})
        return outcome

    return counted


def wait_ended(job: Job | None, error: JobPollError | None, seconds: float) -> None:
    """A wait over, by the rules: its job ended (`error` None), or `error` ended it."""
    attributes: dict[str, str] = {}
    if job is not None:
        attributes["jobpoll.job.status"] = job.status.value
    if error is not None:
        attributes["error.type"] = type(error).__name__
    _ended.add(1, attributes)
    _duration.record(max(0.0, seconds), attributes)

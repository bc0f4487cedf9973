"""Faults the fake service can answer with instead of a job: what flaky servers and proxies do."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen
class HttpError:
    """Answer an HTTP error status with the service's documented error body.

    Args:
        status: the HTTP status, e.g. 503.
        retry_after: a `Retry-After` header: seconds (a number) or the raw header text.
        message: the body's `message`.
        as_date: send a number `retry_after` as an HTTP-date that many seconds after the
            response's own `Date` header.
        headers: more response headers, sent as given after those above (so they win), e.g.
            an odd `Date` to measure an HTTP-date against.
    """

    status: int
    retry_after: float | str | None = None
    message: str = "The service failed (a fault scripted by the test)."
    as_date: bool = False
    headers: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Slow:
    """Answer normally, but only after `seconds` (real time)."""

    seconds: float


@attrs.frozen
class Drop:
    """Close the connection without an answer, or, with `mid_body`, half-way through the body.

    aiohttp's client sends a request once more when a kept-alive connection closes before any
    answer, so a drop without `mid_body` is seen by the client only if it happens twice.
    """

    mid_body: bool = False


@attrs.frozen
class Body:
    """Answer these raw bytes: an HTML page, malformed JSON, an oversized body...

    With `content_type=None` the server names no type; aiohttp then sends
    `application/octet-stream`, as RFC 9110 says a client should assume. `headers` are sent
    too (e.g. a `Retry-After` on a proxy's 503 page).
    """

    content: bytes | str
    status: int = 200
    content_type: str | None = "application/json"
    headers: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class Redirect:
    """Answer a redirect to `location`."""

    location: str
    status: int = 302


@attrs.frozen
class Patch:
    """Answer the job as usual, with these wire fields replaced (e.g. `{"progress": "77"}`)."""

    fields: Mapping[str, Any]


@attrs.frozen
class Headers:
    """Answer as usual (the job, or the error an unknown job or a wrong key gets), with these
    response headers added or replaced: e.g. a `Retry-After` on the 404 of an unknown job.
    Values are sent as given; they must not hold line breaks."""

    headers: Mapping[str, str]


#: Anything the fake service can be told to answer instead of the job.
Fault = HttpError | Slow | Drop | Body | Redirect | Patch | Headers


@attrs.define
class RateLimit:
    """A gateway's token bucket in front of the service, as API gateways hold each key to a
    rate: `rate` requests a second on average, bursts of up to `burst`; a request over it is
    answered `status` (429) with `Retry-After: retry_after` (None: no header).

    The bucket starts full and fills on the service's clock. Change `rate` or `burst` while
    the service runs to model a limit that changes; the tokens left are kept.
    """

    rate: float
    burst: float = 1.0
    retry_after: float | None = 1.0
    status: int = 429
    tokens: float | None = attrs.field(default=None, init=False, repr=False)
    filled_at: float = attrs.field(default=0.0, init=False, repr=False)

    def refusal(self, now: float) -> HttpError | None:
        """Take a token for a request arriving at `now`; the answer when there is none."""
        tokens = self.burst if self.tokens is None else self.tokens
        tokens = min(self.burst, tokens + max(0.0, now - self.filled_at) * self.rate)
        self.filled_at = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return None
        self.tokens = tokens
        return HttpError(
            self.status, retry_after=self.retry_after, message="Too many requests for this key."
        )

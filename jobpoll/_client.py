"""`JobsClient`: one call, `get_job`, that turns every answer of the service into a `Job` or
a typed error (what aiohttp raised is mapped in `_transport`, the answer read in `_answer`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Self
from uuid import UUID

import aiohttp
from multidict import CIMultiDict

from jobpoll import _defaults as defaults
from jobpoll import _metrics as metrics
from jobpoll._answer import error_of, job_of
from jobpoll._config import (
    API_KEY_HEADER,
    base_url_or_environment,
    check_api_key,
    check_positive,
    client_timeout,
    endpoint_of,
)
from jobpoll._errors import ClientStateError, JobPollError, TransportError
from jobpoll._gate import Gate
from jobpoll._ids import check_job_id
from jobpoll._models import Job
from jobpoll._redact import Redactor
from jobpoll._state import RateState
from jobpoll._transport import Failure, TransportFailures, refuse_plain_proxy
from jobpoll._version import __version__

logger = logging.getLogger("jobpoll")


class _Headers(CIMultiDict[str]):
    """Headers whose repr hides the API key; a `CIMultiDict`, which aiohttp sends as is."""

    def __repr__(self) -> str:
        shown = {k: "<redacted>" if k.upper() == API_KEY_HEADER else v for k, v in self.items()}
        return f"<_Headers {shown!r}>"


class JobsClient:
    """A client of the job-status endpoint, `GET {base_url}/bankaccounts/jobs?jobId=...`.

    Use it as an async context manager, or call `aclose()` when done.

    Nothing the server sends back shows the API key: in every error and log line, each run of
    6 or more of its characters, as is or encoded (JSON, percent, HTML), is `<redacted>`.

    Args:
        api_key: the key sent in `X-API-KEY`; when None, the environment's `CDQ_API_KEY`.
        base_url: the service's base URL: https, or http on a loopback host. When None, the
            environment's `CDQ_BASE_URL`, else the production URL (`DEFAULT_BASE_URL`).
        session: an `aiohttp.ClientSession` of the caller's to send with; jobpoll never closes it.
            Without one, it opens its own, a pool of `max_connections`, closed by `aclose()`.
        connect_timeout: seconds to wait for a connection.
        read_timeout: seconds to wait for each read from the socket.
        total_timeout: seconds one request may take in all. These three apply to every
            request, on a caller's session too.
        max_connections: the size of the connection pool of the client's own session, which
            `wait_for_jobs` sends up to at once (100, as aiohttp's default).
        max_body_size: bytes of a response body read at the most; a larger body is a
            `DecodeError`, never read whole into memory.
        max_rate: the most requests a second the client sends (a known quota); either way it
            learns the rate the service accepts from its refusals (docs/rate-limits.md).
        clock, sleep: what the client's rate is kept with (real time, or `jobpoll_clock`'s).

    Raises:
        ConfigurationError: no API key, a base URL that is not https (nor loopback http) or
            carries credentials, or an option out of range.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        session: aiohttp.ClientSession | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
        total_timeout: float = 30.0,
        max_connections: int = 100,
        max_body_size: int = 1 << 20,
        max_rate: float | None = None,
        clock: Callable[[], float] = defaults.monotonic,
        sleep: Callable[[float], Awaitable[object]] = defaults.sleep,
    ) -> None:
        base_url = base_url_or_environment(base_url)
        self._endpoint = endpoint_of(base_url)
        self._base_url = str(base_url).rstrip("/")
        api_key = check_api_key(api_key)
        self._headers = _Headers(
            {
                API_KEY_HEADER: api_key,
                "Accept": "application/json",
                "User-Agent": f"jobpoll/{__version__}",
            }
        )
        self._redact = Redactor(api_key)
        check_positive("connect_timeout", connect_timeout)
        check_positive("read_timeout", read_timeout)
        check_positive("total_timeout", total_timeout)
        check_positive("max_connections", max_connections, whole=True)
        check_positive("max_body_size", max_body_size, whole=True)
        self._timeouts = (connect_timeout, read_timeout, total_timeout)
        self._longest_timeout = max(self._timeouts)
        self._timeout = client_timeout(connect_timeout, read_timeout, total_timeout)
        self._max_connections = max_connections
        self._max_body_size = max_body_size
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(f"session must be an aiohttp.ClientSession, got {type(session)}")
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._plain_http = self._endpoint.scheme == "http"
        self._loop: asyncio.AbstractEventLoop | None = None  # of the client's own session
        self._reached = False  # has any HTTP answer come back (any status)?
        self._warned = False  # was the first failure before any answer logged at WARNING?
        self._found = False  # has any job been read?
        if max_rate is not None:
            check_positive("max_rate", max_rate, unit="requests a second")
        self._gate = Gate(max_rate, self.pool_size, clock, sleep)

    @property
    def base_url(self) -> str:
        """The service's base URL, without a trailing slash."""
        return self._base_url

    @property
    def max_connections(self) -> int:
        """The size of the pool of the client's own session (a caller's session has its own)."""
        return self._max_connections

    @property
    def pool_size(self) -> int:
        """How many requests can be out at once without queueing for a connection: for a
        caller's session, its connector's `limit` or `limit_per_host`, else `max_connections`."""
        if self._owns_session or self._session is None or self._session.connector is None:
            return self._max_connections
        connector = self._session.connector
        limits = [limit for limit in (connector.limit, connector.limit_per_host) if limit > 0]
        return min(limits, default=self._max_connections)

    @property
    def max_rate(self) -> float | None:
        """The ceiling on requests a second the client was given, if any."""
        return self._gate.control.max_rate

    @property
    def rate(self) -> float:
        """The requests a second the client holds itself to now (`math.inf`: none yet)."""
        return self._gate.rate()

    def learned_rate(self, now: float) -> RateState | None:
        """What a fan-out's checkpoint carries (`Gate.learned`)."""
        return self._gate.learned(now)

    def resume_rate(self, saved: RateState, now: float) -> None:
        """Go on from a checkpoint's rate (`Gate.resume`)."""
        self._gate.resume(saved, now)

    @property
    def max_body_size(self) -> int:
        """The most bytes of a response body the client reads."""
        return self._max_body_size

    def __repr__(self) -> str:
        owner = "own session" if self._owns_session else "caller's session"
        state = " closed" if self._closed else ""
        return f"<JobsClient {self.base_url} ({owner}){state}>"

    async def __aenter__(self) -> Self:
        self._open_session()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client's own session (never a caller's). Safe to call more than once."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()

    def _open_session(self) -> aiohttp.ClientSession:
        session = self._session
        if session is None:
            if self._closed:
                raise ClientStateError("this JobsClient is closed")
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, limit_per_host=self._max_connections
            )
            self._loop = asyncio.get_running_loop()
            session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
            self._session = session
        elif session.closed:
            raise ClientStateError(
                "the aiohttp session under this JobsClient is closed"
                if self._owns_session
                else "the aiohttp session given to this JobsClient was closed by its owner"
            )
        elif self._loop is not None and asyncio.get_running_loop() is not self._loop:
            raise ClientStateError(
                "this JobsClient's session belongs to another event loop: open one client "
                "per event loop"
            )
        return session

    async def get_job(
        self,
        job_id: str | UUID,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        paced: bool = True,
    ) -> Job:
        """Fetch one job's current state.

        Args:
            job_id: the job's id (sent as the `jobId` query parameter, never in the path).
            timeout: if given, the most seconds this one request may take; it shortens (never
                lengthens) the client's timeouts, so a wait can keep within its deadline.
            paced: False: sent at once, outside the client's rate, and its answer teaches
                that rate nothing: for requests paced elsewhere (`jobpoll.saq`'s workers
                share one rate through Redis).

        Returns:
            The job as the server reported it, its `id` as `job_id` spells it (see `Job.id`).

        Raises:
            InvalidJobId: the id is empty, too long, or holds control characters.
            ConfigurationError: `timeout` is not a positive number of seconds, or a caller's
                session would send plain http through a proxy.
            ClientStateError: the client or its session is closed, or is another loop's.
            ApiError: the server answered an error status (a subclass names which).
            TransportError: no answer (refused, reset, timed out, a TLS or DNS failure).
            DecodeError: the answer is not a valid job.
        """
        job_id = check_job_id(job_id)
        session = self._open_session()
        gate = self._gate
        if not paced:
            outcome = await self._send(session, job_id, timeout)
        elif gate.engaged:  # waits its turn first (a slow start, or a rate)
            outcome = await gate.in_turn(
                functools.partial(self._send, session, job_id), job_id, timeout
            )
        else:  # the way of every request while the service has refused none
            sent_in = gate.control.cuts
            outcome = await self._send(session, job_id, timeout)
            if type(outcome) is Job and not gate.engaged:
                gate.control.answered(gate.clock())
            else:
                gate.leave(outcome, sent_in, job_id)
        if isinstance(outcome, Job):
            return outcome
        raise outcome  # from a frame that never held the body, outside any handler

    @metrics.counts_polls
    async def _send(
        self, session: aiohttp.ClientSession, job_id: str, seconds: float | None
    ) -> Job | JobPollError:
        request_timeout = self._timeout if seconds is None else self._shortened(seconds)
        if self._plain_http and not self._owns_session:
            refuse_plain_proxy(session, self._endpoint)
        answered_before = self._reached
        with TransportFailures(self._endpoint, session, self._redact) as sent:
            async with session.get(
                self._endpoint,
                params={"jobId": job_id},
                headers=self._headers,
                allow_redirects=False,  # a redirect must not carry the key to another host
                raise_for_status=False,  # the status is ours to judge, whatever the session says
                timeout=request_timeout,
            ) as response:
                # Read up to one byte over the cap, in reads that bound what is buffered (and
                # how much a compressed body is inflated) at a time.
                cap = self._max_body_size
                content = response.content
                body = b""
                while len(body) <= cap and not content.at_eof():
                    chunk = await content.read(cap + 1 - len(body))
                    if not chunk:
                        break
                    body += chunk
        if sent.failure is not None:
            return self._failed(job_id, sent.failure, answered_before)
        return self._read(job_id, response, body if len(body) <= cap else None)

    def _read(
        self, job_id: str, response: aiohttp.ClientResponse, kept: bytes | None
    ) -> Job | JobPollError:
        """`kept`: the body, None when it was over the cap (not read whole)."""
        self._reached = True
        http_status = response.status
        logger.debug("job %s: HTTP %d", job_id, http_status)
        cap = self._max_body_size
        if 200 <= http_status <= 299:
            job = job_of(job_id, http_status, response.headers, kept, cap, self._redact)
            if type(job) is Job:
                self._found = True
            return job
        error = error_of(job_id, http_status, response.reason, response.headers, kept, self._redact)
        if http_status == 404 and not self._found:
            error.args = (
                f"{error.args[0]}; no job has been found through this client yet: is base_url "
                f"({self._base_url}) right?",
            )
        return error

    def _failed(self, job_id: str, failure: Failure, answered_before: bool) -> JobPollError:
        """The first failure before any answer is also logged at WARNING: most often a wrong
        setup, not to be waited out in silence."""
        if failure.misuse:
            return ClientStateError(
                f"cannot send with this client: {failure.text} (its session is closed, or "
                "belongs to another event loop)",
                job_id=job_id,
            )
        text = failure.text
        if not self._reached:
            text += f"; nothing has answered at {self._base_url} yet"
            if not self._warned:
                self._warned = True
                logger.warning("%s", text)
        logger.debug("job %s: transport error: %s", job_id, text)
        transient = failure.transient if failure.transient is not None else answered_before
        return TransportError(
            f"request for job {job_id!r} failed: {text}",
            job_id=job_id,
            reached=failure.reached,
            never_answered=not self._reached,
            transient=transient,
        )

    def _shortened(self, timeout: float) -> aiohttp.ClientTimeout:
        if type(timeout) is float and self._longest_timeout <= timeout < math.inf:
            return self._timeout  # cuts none of the client's timeouts: no new object per poll
        check_positive("timeout", timeout)
        connect, read, total = (min(timeout, seconds) for seconds in self._timeouts)
        return client_timeout(connect, read, total)


def redactor_of(client: JobsClient) -> Redactor:
    """What hides `client`'s API key, for a text that did not come through it (an error of a
    worker's outcome function, kept in Redis for an operator to read)."""
    return client._redact

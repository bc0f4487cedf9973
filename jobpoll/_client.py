"""`JobsClient`: one call, `get_job`, that turns every answer of the service into a `Job` or
a typed error."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
import math
import os
import socket
import ssl
import time
import urllib.request
from collections.abc import Collection
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Self
from uuid import UUID

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from jobpoll._checks import check_positive as _check_positive
from jobpoll._errors import (
    ApiError,
    ClientStateError,
    ConfigurationError,
    DecodeError,
    InvalidJobId,
    TransportError,
    api_error_for_status,
)
from jobpoll._models import Job
from jobpoll._version import __version__
from jobpoll._wire import WireError, decode_job

__all__ = ["API_KEY_ENV", "BASE_URL_ENV", "DEFAULT_BASE_URL", "JobsClient"]

#: The production base URL of CDQ's Bankaccount Data API (v2).
DEFAULT_BASE_URL = "https://api.cdq.com/bankaccount-data/rest"
#: The environment variable read for the API key when none is passed.
API_KEY_ENV = "CDQ_API_KEY"
#: The environment variable read for the base URL when none is passed.
BASE_URL_ENV = "CDQ_BASE_URL"
#: Job ids longer than this are refused before sending (the service's ids are 36-character UUIDs).
MAX_JOB_ID_LENGTH = 256

_API_KEY_HEADER = "X-API-KEY"
_SNIPPET_LENGTH = 200
_ERROR_FIELD_LENGTH = 500

logger = logging.getLogger("jobpoll")


class _Headers(CIMultiDict[str]):
    """The request headers; their repr hides the API key from logs, debuggers and tracebacks.

    A `CIMultiDict` already, so aiohttp need not convert it on every request.
    """

    def __repr__(self) -> str:
        shown = {k: "<redacted>" if k.upper() == _API_KEY_HEADER else v for k, v in self.items()}
        return f"<_Headers {shown!r}>"


class JobsClient:
    """A client of the job-status endpoint, `GET {base_url}/bankaccounts/jobs?jobId=...`.

    Use it as an async context manager, or call `aclose()` when done:

        async with JobsClient() as client:
            job = await client.get_job("35f23c03-1c22-45fe-9484-3ffe769325de")

    Args:
        api_key: the key sent in `X-API-KEY`; when None, the environment variable
            `CDQ_API_KEY` is read.
        base_url: the service's base URL. Must be https, except on a loopback host. When
            None, the environment variable `CDQ_BASE_URL` is read, and when that is not set,
            the production URL (`DEFAULT_BASE_URL`) is used.
        session: an `aiohttp.ClientSession` of the caller's to send requests with; jobpoll
            never closes it. Without one, the client opens its own, with a pool of
            `max_connections`, and closes it in `aclose()`.
        connect_timeout: seconds to wait for a connection.
        read_timeout: seconds to wait for each read from the socket. One no shorter than
            `total_timeout` could never fire first, so it is not armed: aiohttp's per-read timer
            costs CPU on every response (about 5% of a poll, see benchmarks/bench_client.py).
        total_timeout: seconds one request may take in all. These three apply to every
            request, on a caller's session too.
        max_connections: the size of the connection pool of the client's own session (100,
            as aiohttp's own default): a fan-out's polls (`wait_for_jobs` sends up to the
            pool's size at once) and fifty callers of `get_job` at a time each find a
            connection free, instead of queueing for one while their timeouts run, which also
            costs CPU (8-13% per poll for 50 callers on a pool of 32).
        max_body_size: bytes of a response body read at the most; a larger body is a
            `DecodeError`, never read whole into memory.

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
    ) -> None:
        base_url = _base_url_or_environment(base_url)
        self._endpoint = _endpoint(base_url)
        self._base_url = str(base_url).rstrip("/")
        self._headers = _Headers(
            {
                _API_KEY_HEADER: _check_api_key(api_key),
                "Accept": "application/json",
                "User-Agent": f"jobpoll/{__version__}",
            }
        )
        for name, seconds in (
            ("connect_timeout", connect_timeout),
            ("read_timeout", read_timeout),
            ("total_timeout", total_timeout),
        ):
            _check_positive(name, seconds)
        _check_positive("max_connections", max_connections, whole=True)
        _check_positive("max_body_size", max_body_size, whole=True)
        self._timeouts = (connect_timeout, read_timeout, total_timeout)
        self._longest_timeout = max(self._timeouts)
        self._timeout = _client_timeout(connect_timeout, read_timeout, total_timeout)
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
        """How many requests the client can have out at once without queueing for a connection.

        `max_connections` for the client's own session; for a caller's session, its
        connector's `limit` and `limit_per_host` (the smaller of those that are set), or
        `max_connections` when neither is.
        """
        if self._owns_session or self._session is None:
            return self._max_connections
        connector = self._session.connector
        limits = [
            limit
            for limit in (getattr(connector, "limit", 0), getattr(connector, "limit_per_host", 0))
            if isinstance(limit, int) and limit > 0
        ]
        return min(limits) if limits else self._max_connections

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

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
        # A per-request budget: it becomes the request's own timeouts, so a slow answer is a
        # TransportError and the connection is cleaned up by aiohttp.
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Job:
        """Fetch one job's current state.

        Args:
            job_id: the job's id (sent as the `jobId` query parameter, never in the path).
            timeout: if given, the most seconds this one request may take; it shortens (never
                lengthens) the client's timeouts, so a wait can keep within its deadline.

        Returns:
            The job as the server reported it.

        Raises:
            InvalidJobId: the id is empty, too long, or holds control characters.
            ConfigurationError: `timeout` is not a positive number of seconds, or a caller's
                session would send plain http through a proxy.
            ClientStateError: the client or its session is closed, or it is used from
                another event loop.
            ApiError: the server answered an error status (a subclass names which).
            TransportError: no answer: connection refused or reset, a timeout, a failed TLS
                handshake or a host name that does not resolve.
            DecodeError: the answer is not a valid job.
        """
        job_id = check_job_id(job_id)
        session = self._open_session()
        request_timeout = self._timeout if timeout is None else self._shortened(timeout)
        if self._plain_http and not self._owns_session and self._session_proxy(session) is not None:
            raise ConfigurationError(
                f"refusing plain http to {self._endpoint.host} through a proxy: the API key "
                "would reach the proxy in clear text; exempt the host in NO_PROXY, or use https"
            )
        failure: str | None = None
        misused: str | None = None
        reached = True
        # TLS and name failures are about the setup (not transient) until the server has
        # answered once; after that, a passing fault to ride out like any other.
        setup = not self._reached
        transient = True
        try:
            async with session.get(
                self._endpoint,
                params={"jobId": job_id},
                headers=self._headers,
                allow_redirects=False,  # a redirect must not carry the key to another host
                raise_for_status=False,  # the status is ours to judge, whatever the session says
                timeout=request_timeout,
            ) as response:
                # A small body comes whole in one read; a larger one is read on, up to the cap
                # (the helper's coroutine is only paid for then).
                cap = self._max_body_size
                content = response.content
                read = await content.read(cap + 1)
                if len(read) <= cap and not content.at_eof():
                    read = await _read_on(read, content, cap)
                body = read if len(read) <= cap else None  # None: over the cap, not read whole
                http_status = response.status
                reason = response.reason
                headers = response.headers
        # None of aiohttp's exceptions is kept, chained or quoted whole: their tracebacks keep
        # aiohttp's frames alive, whose locals hold the request headers, key included.
        except aiohttp.ConnectionTimeoutError:
            failure = f"no connection to {self._endpoint.host}:{self._endpoint.port} in time"
            reached = False
        except TimeoutError:
            failure = "no answer in time"
        except aiohttp.ClientResponseError as exc:
            failure = f"invalid response ({exc.message})"
        except aiohttp.ClientSSLError as exc:
            failure = (
                f"TLS failed ({_os_error_text(exc)}): is {self._endpoint.host}:"
                f"{self._endpoint.port} serving https with a valid certificate?"
            )
            transient = not setup
        except aiohttp.ClientConnectorDNSError as exc:
            failure = f"cannot resolve host {self._endpoint.host} ({_os_error_text(exc)})"
            # EAI_AGAIN is the resolver failing for now, not an answer that there is no host.
            reached, transient = False, not setup or exc.os_error.errno == socket.EAI_AGAIN
        except aiohttp.ClientProxyConnectionError as exc:
            failure, reached = f"cannot connect to the proxy ({_os_error_text(exc)})", False
        except aiohttp.ClientConnectorError as exc:
            failure = f"cannot connect to {self._endpoint.host}:{self._endpoint.port}"
            failure += f" ({_os_error_text(exc)})"
            reached = False
        except aiohttp.ServerFingerprintMismatch:
            failure, transient = "the server's certificate does not match the pinned one", False
        except aiohttp.ClientError as exc:
            failure = str(exc) or type(exc).__name__
        except RuntimeError as exc:
            # What aiohttp raises for a closed session, or one of another (maybe closed)
            # event loop; anything else is a bug to see whole.
            if not (session.closed or _of_another_loop(session)):
                raise
            misused = str(exc)
        if misused is not None:  # raised here, not in the handler: no context to keep alive
            raise ClientStateError(
                f"cannot send with this client: {misused} (its session is closed, or belongs "
                "to another event loop)",
                job_id=job_id,
            )
        if failure is not None:
            failure = self._redacted(failure)
            if not self._reached:
                failure += f"; nothing has answered at {self._base_url} yet"
            if not (self._reached or self._warned):
                # Said out loud, once: most often a wrong setup, not to be waited out in silence.
                self._warned = True
                logger.warning("%s", failure)
            logger.debug("job %s: transport error: %s", job_id, failure)
            raise TransportError(
                f"request for job {job_id!r} failed: {failure}",
                job_id=job_id,
                reached=reached,
                never_answered=not self._reached,
                transient=transient,
            )

        self._reached = True
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("job %s: HTTP %d", job_id, http_status)
        if 200 <= http_status <= 299:
            try:
                job = _job_from_response(job_id, http_status, headers, body, self._max_body_size)
            except DecodeError as exc:
                raise self._redacted_error(exc) from None
            self._found = True
            return job
        error = self._redacted_error(_api_error(job_id, http_status, reason, headers, body))
        if http_status == 404 and not self._found:
            error.args = (
                f"{error.args[0]}; no job has been found through this client yet: is base_url "
                f"({self._base_url}) right?",
            )
        raise error

    def _shortened(self, timeout: float) -> aiohttp.ClientTimeout:
        if type(timeout) is float and self._longest_timeout <= timeout < math.inf:
            return self._timeout  # cuts none of the client's timeouts: no new object per poll
        _check_positive("timeout", timeout)
        connect, read, total = (min(timeout, seconds) for seconds in self._timeouts)
        return _client_timeout(connect, read, total)

    def _session_proxy(self, session: aiohttp.ClientSession) -> object:
        """The proxy a session would send a request to the endpoint through, or None.

        As aiohttp decides: the session's `proxy=`, else with `trust_env` the environment's
        proxy for http unless `NO_PROXY` exempts the host. Read from the environment only
        (no file is read), so it is cheap enough for every request.
        """
        proxy = getattr(session, "_default_proxy", None)  # ClientSession(proxy=...)
        if proxy is None and session.trust_env:
            host = self._endpoint.host or ""
            if not urllib.request.proxy_bypass(host):
                proxy = urllib.request.getproxies().get("http")
        return proxy

    def _redacted(self, text: str) -> str:
        """Text that came from the server, without the key should it echo the request."""
        key = self._headers[_API_KEY_HEADER]
        return text.replace(key, "<redacted>") if key in text else text

    def _redacted_error(self, error: ApiError | DecodeError) -> ApiError | DecodeError:
        key = self._headers[_API_KEY_HEADER]
        if any(key in str(value) for value in (*error.args, *vars(error).values())):
            error.args = tuple(self._redacted(str(arg)) for arg in error.args)
            for name, value in vars(error).items():
                if isinstance(value, str):
                    setattr(error, name, self._redacted(value))
        return error


def _client_timeout(connect: float, read: float, total: float) -> aiohttp.ClientTimeout:
    # A read timeout that cannot fire before the total one would only cost timer churn.
    return aiohttp.ClientTimeout(
        total=total, connect=connect, sock_read=read if read < total else None
    )


def _of_another_loop(session: aiohttp.ClientSession) -> bool:
    loop = getattr(session, "_loop", None)  # aiohttp's own; its public `loop` is deprecated
    return loop is not None and loop is not asyncio.get_running_loop()


def _os_error_text(exc: aiohttp.ClientConnectorError) -> str:
    """What the operating system said, without aiohttp's wording (which names the request)."""
    os_error = exc.os_error
    if isinstance(os_error, ssl.SSLError):
        return str(os_error.reason or os_error)
    if isinstance(os_error, socket.gaierror) or not os_error.errno:
        return str(os_error.strerror or os_error) or type(os_error).__name__
    return os.strerror(os_error.errno)


def _check_api_key(api_key: str | None) -> str:
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV)
        if api_key is None:
            raise ConfigurationError(f"no API key: pass api_key= or set {API_KEY_ENV}")
    if not isinstance(api_key, str) or not api_key.strip():
        raise ConfigurationError("the API key is empty or not a string")
    if not (api_key.isascii() and api_key.isprintable()) or api_key != api_key.strip():
        # Never quote the key, not even in part.
        raise ConfigurationError(
            "the API key holds characters an HTTP header cannot carry (non-ASCII, control "
            "characters, or leading/trailing white space)"
        )
    return api_key


def _base_url_or_environment(base_url: str | None) -> str:
    if base_url is not None:
        return base_url
    from_environment = os.environ.get(BASE_URL_ENV)
    if from_environment is None:
        return DEFAULT_BASE_URL
    # Set but empty is most often a template left unfilled: better said than replaced by
    # the production URL.
    if not from_environment.strip():
        raise ConfigurationError(f"{BASE_URL_ENV} is set but empty")
    try:
        _endpoint(from_environment)
    except ConfigurationError as exc:
        exc.args = (f"{BASE_URL_ENV}: {exc.args[0]}",)
        raise
    return from_environment


def _endpoint(base_url: str) -> URL:
    if not isinstance(base_url, str):
        raise ConfigurationError(f"base_url must be a str, got {type(base_url).__name__}")
    try:
        url = URL(base_url)
    except (TypeError, ValueError):
        # Not quoted, nor yarl's message (which may quote it): a URL can carry a secret.
        raise ConfigurationError("base_url is not a valid URL") from None
    if url.user is not None or url.password is not None:  # checked first: never echo them
        raise ConfigurationError("base_url must not carry credentials; pass api_key= instead")
    # Only the scheme, host, port and path are ever quoted: a query or fragment may hold a secret.
    shown = str(url.with_query(None).with_fragment(None)) if url.is_absolute() else "a relative URL"
    if url.scheme not in ("https", "http") or not url.host:
        raise ConfigurationError(f"base_url must be an absolute https URL, got {shown}")
    if url.query_string or url.fragment:
        raise ConfigurationError(
            f"base_url must have no query or fragment, got {shown} with one (not shown)"
        )
    if url.scheme == "http" and not _is_loopback(url.host):
        raise ConfigurationError(
            f"refusing plain http to {url.host}: the API key would cross the network in clear "
            "text; use https (plain http is allowed only on a loopback host)"
        )
    return url / "bankaccounts" / "jobs"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_job_id(job_id: object) -> str:
    """The job id as a plain `str`, or `InvalidJobId` when it could never be sent."""
    # The common case in one expression: it runs on every poll.
    if (
        type(job_id) is str
        and 0 < len(job_id) <= MAX_JOB_ID_LENGTH
        and job_id.isprintable()  # False for control, format and separators other than " "
        and job_id[0] != " "
        and job_id[-1] != " "
    ):
        return job_id
    if isinstance(job_id, UUID):
        return str(job_id)
    if not isinstance(job_id, str):
        raise InvalidJobId(f"a job id must be a str or UUID, got {type(job_id).__name__}")
    if not job_id:
        raise InvalidJobId("the job id is empty")
    if len(job_id) > MAX_JOB_ID_LENGTH:
        raise InvalidJobId(
            f"the job id is {len(job_id)} characters long; at most {MAX_JOB_ID_LENGTH} are allowed"
        )
    if not job_id.isprintable() or job_id != job_id.strip():
        shown = ascii(job_id) if len(job_id) <= 60 else ascii(job_id[:57]) + "..."
        raise InvalidJobId(
            f"the job id {shown} holds control characters or leading/trailing white space"
        )
    return str(job_id)  # a str subclass, as a plain str


def all_plain_job_ids(job_ids: Collection[object]) -> bool:
    """True when every id passes `check_job_id` as it is: a plain `str` of 1 to 256
    characters, printable, with no space at either end. The same rules as `check_job_id`'s
    first test, over a whole collection at C speed: a fan-out may be given a million ids at
    once, and the call must not hold the event loop for long. False says only that some id
    needs `check_job_id`, which then converts it (a UUID) or says what is wrong with it.
    `tests/test_security.py` checks that both agree."""
    if not job_ids:
        return True
    if set(map(type, job_ids)) != {str} or max(map(len, job_ids)) > MAX_JOB_ID_LENGTH:  # type: ignore[arg-type]
        return False
    # One string of all the ids, a space between two: it is printable when each id is (a
    # space is), and it has two spaces in a row, or one at either end, when an id is empty or
    # has a space at either end (an empty string: the only id is empty).
    joined = " ".join(job_ids)  # type: ignore[arg-type]
    return (
        joined.isprintable()
        and "  " not in joined
        and joined[:1] not in ("", " ")  # "": the only id is empty
        and joined[-1] != " "
    )


async def _read_on(body: bytes, content: aiohttp.StreamReader, cap: int) -> bytes:
    """The body whose first read gave `body`, read on to its end or to `cap + 1` bytes.

    read(n) bounds what is buffered, and how much a compressed body is inflated, at a time.
    """
    while len(body) <= cap and not content.at_eof():
        chunk = await content.read(cap + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return body


def _snippet(body: bytes | None) -> str:
    if not body:
        return ""
    return _printable(body[:_SNIPPET_LENGTH].decode("utf-8", "replace"))


def _printable(text: str) -> str:
    """Server text fit for a log line: control characters (a forged line break) become spaces."""
    return "".join(c if c.isprintable() else " " for c in text)


def _job_from_response(
    job_id: str,
    http_status: int,
    headers: CIMultiDictProxy[str],
    body: bytes | None,
    cap: int,
) -> Job:
    content_type = headers.get("Content-Type")
    if body is None:
        message = f"body larger than the cap of {cap} bytes"
        raise _decode_error(job_id, http_status, content_type, body, message)
    if not _is_json(content_type):
        # An HTML page or plain text on a 2xx is an intermediary talking, not the service.
        message = f"expected a JSON body, got Content-Type {content_type}"
        raise _decode_error(job_id, http_status, content_type, body, message, transient=True)
    try:
        job = decode_job(body, job_id=job_id)
    except WireError as exc:
        raise _decode_error(
            job_id, http_status, content_type, body, str(exc), exc.field, transient=exc.malformed
        ) from None
    if job.id != job_id and job.id.casefold() != job_id.casefold():
        message = f"id: the answer is about job {job.id!r}"
        raise _decode_error(job_id, http_status, content_type, body, message, "id")
    return job


def _decode_error(
    job_id: str,
    http_status: int,
    content_type: str | None,
    body: bytes | None,
    message: str,
    field: str | None = None,
    *,
    transient: bool = False,
) -> DecodeError:
    if field is None and body:
        # The body as a whole is wrong: its start tells a proxy's page from a bug.
        message += f"; body starts {_snippet(body[:60])!r}"
    return DecodeError(
        f"job {job_id!r}: {message}",
        job_id=job_id,
        field=field,
        snippet=_snippet(body),
        content_type=content_type,
        http_status=http_status,
        transient=transient,
    )


@functools.lru_cache(maxsize=32)  # servers send one or two distinct values, on every poll
def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return True  # no claim either way: let the body speak
    mime = content_type.partition(";")[0].strip().lower()
    # application/octet-stream is what RFC 9110 says to assume when a server names no type.
    return mime in ("application/json", "application/octet-stream") or mime.endswith("+json")


def _api_error(
    job_id: str,
    http_status: int,
    reason: str | None,
    headers: CIMultiDictProxy[str],
    body: bytes | None,
) -> ApiError:
    fields = _error_fields(body)
    message = fields.get("message")
    if 300 <= http_status <= 399:
        location = headers.get("Location", "nowhere")[:_ERROR_FIELD_LENGTH]
        message = f"redirect to {location} not followed (the API key goes to base_url only)"
    return api_error_for_status(http_status)(
        http_status,
        job_id=job_id,
        reason=_printable(reason[:_SNIPPET_LENGTH]) if reason else None,
        message=message,
        error=fields.get("error"),
        error_id=fields.get("id"),
        path=fields.get("path"),
        retry_after=parse_retry_after(headers.get("Retry-After"), headers.get("Date")),
    )


def _error_fields(body: bytes | None) -> dict[str, str]:
    """The string fields of a documented error body; nothing when the body is anything else."""
    if not body:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        key: value[:_ERROR_FIELD_LENGTH]
        for key in ("message", "error", "id", "path")
        if isinstance(value := data.get(key), str) and value
    }


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

"""What aiohttp raises under a request, as words jobpoll says about it (one table, in the
shape of httpx's `map_httpcore_exceptions`), and the proxy plain http must not go through.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import urllib.request
from collections.abc import Callable
from typing import Any, Self

import aiohttp
import attrs
from yarl import URL

from jobpoll._errors import ConfigurationError
from jobpoll._redact import Redactor


@attrs.frozen
class Failure:
    """Why a request got no usable answer; `text` is redacted, fit for any log.

    `transient` is None for a TLS or name failure: the setup's fault until the server has
    answered once. `misuse`: the session is closed or another loop's (a `ClientStateError`).
    """

    text: str
    reached: bool = True
    transient: bool | None = True
    misuse: bool = False


def _os_error_text(exc: aiohttp.ClientConnectorError) -> str:
    """What the operating system said, without aiohttp's wording (which names the request)."""
    os_error = exc.os_error
    if isinstance(os_error, ssl.SSLError):
        return str(os_error.reason or os_error)
    if isinstance(os_error, socket.gaierror) or not os_error.errno:
        return str(os_error.strerror or os_error) or type(os_error).__name__
    return os.strerror(os_error.errno)


def _unresolved(exc: aiohttp.ClientConnectorDNSError, to: TransportFailures) -> Failure:
    # EAI_AGAIN is the resolver failing for now, not an answer that there is no host.
    transient = True if exc.os_error.errno == socket.EAI_AGAIN else None
    text = f"cannot resolve host {to.endpoint.host} ({_os_error_text(exc)})"
    return Failure(text, reached=False, transient=transient)


def _misused(exc: RuntimeError, to: TransportFailures) -> Failure | None:
    # What aiohttp raises for a closed session, or one of another (maybe closed) event loop;
    # anything else is a bug to see whole.
    loop = getattr(to.session, "_loop", None)  # aiohttp's own; its public `loop` is deprecated
    if to.session.closed or (loop is not None and loop is not asyncio.get_running_loop()):
        return Failure(str(exc), misuse=True)
    return None


#: Each exception a request may raise, and what it means. The first class that matches
#: wins, so a subclass comes before its base (aiohttp's connection timeout is also a
#: `TimeoutError`, its read timeout both a `TimeoutError` and a `ClientError`).
_FAILURES: tuple[
    tuple[type[BaseException], Callable[[Any, TransportFailures], Failure | None]], ...
] = (
    (
        aiohttp.ConnectionTimeoutError,
        lambda exc, to: Failure(f"no connection to {to.address} in time", reached=False),
    ),
    (TimeoutError, lambda exc, to: Failure("no answer in time")),
    (
        aiohttp.ClientResponseError,
        lambda exc, to: Failure(f"invalid response ({to.redact(exc.message)})"),
    ),
    (
        aiohttp.ClientSSLError,
        lambda exc, to: Failure(
            f"TLS failed ({_os_error_text(exc)}): is {to.address} serving https with a valid "
            "certificate?",
            transient=None,
        ),
    ),
    (aiohttp.ClientConnectorDNSError, _unresolved),
    (
        aiohttp.ClientProxyConnectionError,
        lambda exc, to: Failure(
            f"cannot connect to the proxy ({_os_error_text(exc)})", reached=False
        ),
    ),
    (
        aiohttp.ClientConnectorError,
        lambda exc, to: Failure(
            f"cannot connect to {to.address} ({_os_error_text(exc)})", reached=False
        ),
    ),
    (
        aiohttp.ServerFingerprintMismatch,
        lambda exc, to: Failure(
            "the server's certificate does not match the pinned one", transient=False
        ),
    ),
    (aiohttp.ClientError, lambda exc, to: Failure(to.redact(str(exc)) or type(exc).__name__)),
    (RuntimeError, _misused),
)


@attrs.define
class TransportFailures:
    """Around one request: what the table knows becomes `failure`, the exception dropped
    with its traceback (whose frames hold the request's headers, key included), for the
    caller to raise its error with no context; anything else (a cancellation, a bug)
    propagates."""

    endpoint: URL
    session: aiohttp.ClientSession
    redact: Redactor
    failure: Failure | None = None

    @property
    def address(self) -> str:
        return f"{self.endpoint.host}:{self.endpoint.port}"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, traceback: object) -> bool:
        if exc is None:
            return False
        for kind, describe in _FAILURES:
            if isinstance(exc, kind):
                self.failure = describe(exc, self)
                return self.failure is not None
        return False


def refuse_plain_proxy(session: aiohttp.ClientSession, endpoint: URL) -> None:
    """A `ConfigurationError` when a session would send plain http to `endpoint` through a
    proxy (found as aiohttp finds it, from the environment only: cheap for every request)."""
    proxy = getattr(session, "_default_proxy", None)  # ClientSession(proxy=...)
    host = endpoint.host or ""
    if proxy is None and session.trust_env and not urllib.request.proxy_bypass(host):
        proxy = urllib.request.getproxies().get("http")
    if proxy is not None:
        raise ConfigurationError(
            f"refusing plain http to {host} through a proxy: the API key would reach the "
            "proxy in clear text; exempt the host in NO_PROXY, or use https"
        )

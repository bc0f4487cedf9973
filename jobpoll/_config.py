"""A client's settings, checked before anything is sent: the API key, the base URL (from the
caller or the environment), and the timeouts and sizes."""

from __future__ import annotations

import ipaddress
import math
import os

import aiohttp
from yarl import URL

from jobpoll._errors import ConfigurationError

#: The production base URL of CDQ's Bankaccount Data API (v2).
DEFAULT_BASE_URL = "https://api.cdq.com/bankaccount-data/rest"
#: The environment variable read for the API key when none is passed.
API_KEY_ENV = "CDQ_API_KEY"
#: The environment variable read for the base URL when none is passed.
BASE_URL_ENV = "CDQ_BASE_URL"
#: The request header that carries the API key.
API_KEY_HEADER = "X-API-KEY"


def check_api_key(api_key: str | None) -> str:
    """The API key (from `CDQ_API_KEY` when None), or a `ConfigurationError` that never
    quotes it, not even in part."""
    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV)
        if api_key is None:
            raise ConfigurationError(f"no API key: pass api_key= or set {API_KEY_ENV}")
    if not isinstance(api_key, str) or not api_key.strip():
        raise ConfigurationError("the API key is empty or not a string")
    if not (api_key.isascii() and api_key.isprintable()) or api_key != api_key.strip():
        raise ConfigurationError(
            "the API key holds characters an HTTP header cannot carry (non-ASCII, control "
            "characters, or leading/trailing white space)"
        )
    return api_key


def base_url_or_environment(base_url: str | None) -> str:
    """The base URL given, else `CDQ_BASE_URL`'s (checked here, so its error names it), else
    the production URL."""
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
        endpoint_of(from_environment)
    except ConfigurationError as exc:
        exc.args = (f"{BASE_URL_ENV}: {exc.args[0]}",)
        raise
    return from_environment


def endpoint_of(base_url: str) -> URL:
    """The job-status endpoint under `base_url`, or a `ConfigurationError`: the URL must be
    absolute https (plain http only on a loopback host), without credentials, query or
    fragment (a URL may carry a secret: only its scheme, host, port and path are quoted)."""
    url = _parsed(base_url)
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


def _parsed(base_url: str) -> URL:
    """The URL `base_url` holds, refused unquoted when it is none or carries credentials."""
    if not isinstance(base_url, str):
        raise ConfigurationError(f"base_url must be a str, got {type(base_url).__name__}")
    try:
        url = URL(base_url)
    except (TypeError, ValueError):
        url = None
    if url is None:  # neither quoted, nor yarl's message (which may quote it)
        raise ConfigurationError("base_url is not a valid URL")
    if url.user is not None or url.password is not None:  # checked first: never echo them
        raise ConfigurationError("base_url must not carry credentials; pass api_key= instead")
    return url


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_positive(name: str, value: float, *, whole: bool = False, unit: str = "seconds") -> None:
    """A `ConfigurationError` unless `value` is a finite number above 0 (a whole one when
    `whole`) of `unit`; a bool is no number here."""
    kind = int if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not 0 < value < math.inf:
        noun = "a positive whole number" if whole else f"a positive number of {unit}"
        raise ConfigurationError(f"{name} must be {noun}, got {value!r}")


def client_timeout(connect: float, read: float, total: float) -> aiohttp.ClientTimeout:
    """aiohttp's timeouts for a request. A read timeout that cannot fire before the total one
    is not armed: it would only cost timer churn on every response."""
    return aiohttp.ClientTimeout(
        total=total, connect=connect, sock_read=read if read < total else None
    )

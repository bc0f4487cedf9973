"""How a command reaches the API: the client its options (--base-url, --api-key-file) and
the environment describe, every mistake said with where it came from, never quoting the key."""

from __future__ import annotations

import os
from pathlib import Path

from jobpoll._client import API_KEY_ENV, DEFAULT_BASE_URL, JobsClient
from jobpoll._errors import ConfigurationError
from jobpoll._exits import Failure


def make_client(base_url: str | None, api_key_file: Path | None) -> JobsClient:
    """The client the options and environment describe.

    Raises:
        Failure: no key, or a key or URL that cannot be used (status 2).
    """
    key, source = _api_key(api_key_file)
    try:
        # The client checks the key; one for the production URL can only refuse the key.
        JobsClient(key, base_url=DEFAULT_BASE_URL)
    except ConfigurationError as exc:
        raise Failure(f"{source}: {exc}") from None
    try:
        return JobsClient(key, base_url=base_url)
    except ConfigurationError as exc:
        raise Failure(f"--base-url: {exc}" if base_url is not None else str(exc)) from None


def _api_key(api_key_file: Path | None) -> tuple[str, str]:
    if api_key_file is None:
        key = os.environ.get(API_KEY_ENV)
        if key is None:
            raise Failure(f"no API key: set {API_KEY_ENV}, or pass --api-key-file FILE")
        return key, API_KEY_ENV
    source = f"--api-key-file {api_key_file}"
    try:
        text = api_key_file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise Failure(f"{source}: cannot read it ({reason})") from None
    lines = text.strip().splitlines()
    if not lines:
        raise Failure(f"{source}: the file is empty")
    return lines[0].strip(), source

"""What a command is given: the options the commands share, each declared once, the job ids
and the client they describe; a mistake is said with where it came from (argument 3, line 7
of FILE, --api-key-file), never quoting the key."""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from jobpoll._client import JobsClient
from jobpoll._config import API_KEY_ENV, BASE_URL_ENV, check_api_key
from jobpoll._errors import ConfigurationError, InvalidJobId
from jobpoll._exits import Failure
from jobpoll._ids import check_job_id
from jobpoll._output import configure_logging

_F = TypeVar("_F", bound=Callable[..., Any])


def with_options(options: Sequence[Callable[[_F], _F]]) -> Callable[[_F], _F]:
    """A decorator adding `options` to a command, in the order listed (for its help)."""

    def decorate(command: _F) -> _F:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    return _positive(value, "seconds")


def _positive(value: float | None, unit: str) -> float | None:
    # click's `FloatRange` lets NaN and infinity through.
    if value is not None and not 0 < value < math.inf:
        raise click.BadParameter(f"{value!r} is not a positive number of {unit}")
    return value


def seconds_option(flag: str, default: float | None, help_text: str) -> Callable[[_F], _F]:
    return click.option(
        flag,
        type=float,
        callback=_seconds,
        metavar="SECONDS",
        default=default,
        show_default=default is not None,
        help=help_text,
    )


IDS_OPTIONS = (
    click.argument("ids", nargs=-1, metavar="[ID]... | -"),
    click.option(
        "-f",
        "--file",
        "files",
        metavar="FILE",
        multiple=True,
        type=click.Path(dir_okay=False, allow_dash=True, path_type=str),
        help="Read job ids from FILE, one per line ('-': standard input); blank lines and"
        " lines starting with # are skipped. May be repeated.",
    ),
)

CONNECTION_OPTIONS = (
    click.option(
        "--base-url",
        metavar="URL",
        default=None,
        help=f"The API's base URL [env: {BASE_URL_ENV}; default: CDQ's production URL].",
    ),
    click.option(
        "--api-key-file",
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"Read the API key from FILE (its first line) [default: the {API_KEY_ENV}"
        " environment variable]. The key is never taken as an argument, which other users of"
        " the machine could see.",
    ),
    click.option(
        "--max-rate",
        type=float,
        callback=lambda _ctx, _param, value: _positive(value, "requests a second"),
        metavar="N",
        default=None,
        help="Send at most N requests a second (the key's quota, if known). Without it the"
        " rate the service accepts is learned from its refusals (429, 503).",
    ),
    click.option(
        "-v",
        "--verbose",
        count=True,
        expose_value=False,
        callback=lambda _ctx, _param, verbose: configure_logging(verbose),
        help="Log each failure ridden out on stderr (-v), and each poll (-vv).",
    ),
)


def names_failures(command: Callable[..., int]) -> Callable[..., int]:
    """Prefix a command's failures with its name (`jobpoll wait: no API key: ...`)."""

    @functools.wraps(command)
    def named(*args: Any, **kwargs: Any) -> int:
        try:
            return command(*args, **kwargs)
        except Failure as exc:
            if not str(exc):
                raise  # nothing to say
            path = click.get_current_context().command_path
            raise Failure(f"{path}: {exc}", exc.exit_code) from None

    return named


STDIN = "-"


def read_ids(arguments: Sequence[str], files: Sequence[str], *, required: bool = True) -> list[str]:
    """The distinct ids from the arguments (`-`: standard input) and files, in that order;
    a `Failure` for a wrong id, a file that cannot be read, or no id at all (if `required`)."""
    ids: list[str] = []
    for position, value in enumerate(arguments, 1):
        if value == STDIN:
            ids.extend(_ids_in(STDIN))
        else:
            ids.append(_checked(value, f"argument {position}"))
    for name in files:
        ids.extend(_ids_in(name))
    if not ids and required:
        raise Failure("no job ids given: pass them as arguments, with -f FILE, or - for stdin")
    return list(dict.fromkeys(ids))


def _checked(job_id: str, where: str) -> str:
    try:
        return check_job_id(job_id)
    except InvalidJobId as exc:
        raise Failure(f"{where}: {exc}") from None


def _ids_in(source: str) -> Iterator[str]:
    """The ids of a file (`-`: standard input), one per line. Lines end at a line feed only:
    `str.splitlines` would also break at \\v, \\x85, U+2028..., making one wrong line two ids."""
    name = "standard input" if source == STDIN else source
    text = _read_text(source, f"cannot read ids from {name}")
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip(" \t\r")  # a CRLF's carriage return too
        if stripped and not stripped.startswith("#"):
            yield _checked(stripped, f"line {number} of {name}")


def _read_text(source: str | Path, cannot: str) -> str:
    """The UTF-8 text of a file (`-`: standard input); `cannot` starts the line of a failure."""
    if source == STDIN and sys.stdin is None:  # `<&-`: Python makes it None
        raise Failure(f"{cannot} (it is closed)")
    try:
        raw = sys.stdin.buffer.read() if source == STDIN else Path(source).read_bytes()
        return raw.decode("utf-8-sig")
    except OSError as exc:
        raise Failure(f"{cannot} ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise Failure(f"{cannot}: not UTF-8 text") from None


def make_client(
    base_url: str | None, api_key_file: Path | None, max_rate: float | None
) -> JobsClient:
    """The client the options and environment describe; a `Failure` for a missing or
    unusable key or URL."""
    key, source = _api_key(api_key_file)
    try:
        check_api_key(key)
    except ConfigurationError as exc:
        raise Failure(f"{source}: {exc}") from None
    try:
        return JobsClient(key, base_url=base_url, max_rate=max_rate)
    except ConfigurationError as exc:
        raise Failure(f"--base-url: {exc}" if base_url is not None else str(exc)) from None


def _api_key(api_key_file: Path | None) -> tuple[str, str]:
    if api_key_file is None:
        key = os.environ.get(API_KEY_ENV)
        if key is None:
            raise Failure(f"no API key: set {API_KEY_ENV}, or pass --api-key-file FILE")
        return key, API_KEY_ENV
    source = f"--api-key-file {api_key_file}"
    lines = _read_text(api_key_file, f"{source}: cannot read it").strip().splitlines()
    if not lines:
        raise Failure(f"{source}: the file is empty")
    return lines[0].strip(), source

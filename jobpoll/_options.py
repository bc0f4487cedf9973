"""The options the commands share, each declared once, and how a command's failures are
named."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from jobpoll._client import API_KEY_ENV, BASE_URL_ENV
from jobpoll._exits import Failure

_F = TypeVar("_F", bound=Callable[..., Any])


def with_options(options: Sequence[Callable[[_F], _F]]) -> Callable[[_F], _F]:
    """A decorator adding `options` to a command, in the order listed (for its help)."""

    def decorate(command: _F) -> _F:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def _seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    # click's `FloatRange` lets NaN and infinity through.
    if value is not None and not 0 < value < math.inf:
        raise click.BadParameter(f"{value!r} is not a positive number of seconds")
    return value


def seconds_option(flag: str, default: float | None, help_text: str) -> Callable[[_F], _F]:
    """An option taking a positive, finite number of seconds."""
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
        "-v",
        "--verbose",
        count=True,
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

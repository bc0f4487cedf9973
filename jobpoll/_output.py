"""Where the command writes, and how text reaches a terminal.

Every string a server or a user controls (an id, the server's `user` and status, an error's
message) reaches rich through `plain()`: a rich `Text`, never parsed as markup (`[/]`,
`[bold red]`) or emoji codes (`:x:`), with control characters shown as escapes (`\x1b`), so
that no answer ends the command with a `MarkupError`, hides part of itself, or moves the
cursor and recolours the terminal. The consoles `make_console` makes have markup, emoji and
highlighting off too, so that a string that reached rich otherwise is still shown as it is.
The lines on stderr (`say`, the log) go through `printable()` the same way.

Imported by the command line only: rich is not needed to use jobpoll as a library.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from typing import IO, Any

import click
from rich.console import Console
from rich.text import Text

__all__ = ["configure_logging", "interactive", "make_console", "plain", "printable", "say"]

logger = logging.getLogger("jobpoll")


#: What a terminal must not be sent as it is: C0 and C1 controls and DEL, the line and
#: paragraph separators, the marks that reorder text (bidirectional overrides and isolates),
#: and lone surrogates (no encoding can write them).
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)


def printable(text: str) -> str:
    """`text` with each character a terminal must not be sent shown as its escape (`\\x1b`,
    `\\u2028`)."""
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def plain(text: str, style: str = "") -> Text:
    """`text` for rich as it is: no markup, no emoji code, control characters escaped."""
    return Text(printable(text), style=style)


def make_console(
    file: IO[str] | None = None, *, terminal: bool, width: int | None = None
) -> Console:
    """A rich console writing `file` (standard output when None), as a terminal (colours,
    cursor moves) or not, that parses nothing it is given as markup, emoji or a highlight."""
    return Console(
        file=file,
        force_terminal=terminal,
        width=width,
        markup=False,
        emoji=False,
        highlight=False,
        soft_wrap=False,
    )


def say(line: str) -> None:
    """One line on stderr (nothing when stderr cannot take it)."""
    with contextlib.suppress(OSError, ValueError):
        click.echo(printable(line), err=True)


def interactive(stream: Any) -> bool:
    """A terminal that can take a live view (not a pipe, a file, or TERM=dumb)."""
    try:
        is_tty = bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
    return is_tty and os.environ.get("TERM", "").lower() not in ("dumb", "unknown")


def configure_logging(verbose: int) -> None:
    """Send jobpoll's log records to stderr with -v; otherwise nowhere (Python's last-resort
    handler would print its warnings, a second line beside the error the command reports)."""
    for handler in [h for h in logger.handlers if isinstance(h, StderrHandler)]:
        logger.removeHandler(handler)  # run() called again in the same process
    handler = StderrHandler(shown=verbose > 0)
    handler.setFormatter(logging.Formatter("jobpoll: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    if verbose:
        logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


class StderrHandler(logging.Handler):
    """Writes to whatever `sys.stderr` is at the time of each record (the live view's proxy
    while it runs), or, when not `shown`, nowhere."""

    def __init__(self, *, shown: bool) -> None:
        super().__init__()
        self.shown = shown

    def emit(self, record: logging.LogRecord) -> None:
        if self.shown:
            with contextlib.suppress(Exception):
                sys.stderr.write(printable(self.format(record)) + "\n")
                sys.stderr.flush()

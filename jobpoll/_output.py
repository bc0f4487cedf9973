"""Where the command writes. Every string a server or a user controls reaches rich through
`plain()` (and stderr through `printable()`), so that no answer can end the command, hide part
of itself or move the cursor; standard output is an `Output`, which no stream can make raise."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import stat
import sys
from collections.abc import Callable, Mapping
from typing import IO, Any, cast

import click
from rich.console import Console
from rich.text import Text

from jobpoll._exits import Failure, write_failure

logger = logging.getLogger("jobpoll")


#: What a terminal must not be sent as it is: C0 and C1 controls and DEL, the line and
#: paragraph separators, the marks that reorder text (bidirectional overrides and isolates),
#: and lone surrogates (no encoding can write them).
_UNSAFE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)


def printable(text: str) -> str:
    """`text` with each character a terminal must not be sent shown as its escape (`\\x1b`)."""
    return _UNSAFE.sub(lambda match: match.group().encode("unicode_escape").decode(), text)


def plain(text: str, style: str = "") -> Text:
    """`text` for rich as it is: no markup, no emoji code, control characters escaped."""
    return Text(printable(text), style=style)


class Output:
    """A stream that no write makes raise: a character the encoding lacks is written as its
    escape (`\\u00fc` in a JSON line, which stays JSON); a write that fails ends the output,
    says how in `failure` and tells `on_failure` once, so that the command stops."""

    def __init__(
        self, stream: IO[str], *, on_failure: Callable[[Failure], None] | None = None
    ) -> None:
        self._stream = stream
        self._on_failure = on_failure
        self.failure: Failure | None = None

    @property
    def encoding(self) -> str:
        return getattr(self._stream, "encoding", None) or "utf-8"

    def isatty(self) -> bool:
        return interactive(self._stream)

    def fileno(self) -> int:
        return self._stream.fileno()

    def write(self, text: str) -> int:
        self._write(
            text, lambda: text.encode(self.encoding, "backslashreplace").decode(self.encoding)
        )
        return len(text)

    def write_json(self, line: Mapping[str, Any]) -> None:
        """Write `line` as one line of JSON, and flush it, for a reader to see it at once."""
        self._write(json.dumps(line, ensure_ascii=False) + "\n", lambda: json.dumps(line) + "\n")
        self.flush()

    def flush(self) -> None:
        if self.failure is None:
            try:
                self._stream.flush()
            except (OSError, ValueError) as exc:
                self._failed(exc)

    def _write(self, text: str, escaped: Callable[[], str]) -> None:
        if self.failure is not None:
            return
        try:
            try:
                self._stream.write(text)
            except UnicodeEncodeError:
                self._stream.write(escaped())
        except (OSError, ValueError) as exc:  # ValueError: a stream closed, or still no encoding
            self._failed(exc)

    def _failed(self, error: Exception) -> None:
        self.failure = write_failure(error, self._stream)
        if self._on_failure is not None:
            self._on_failure(self.failure)


#: A terminal narrower or shorter than this (`COLUMNS=0`, as some tools set it) is taken as
#: the size the terminal itself reports, or else as 80 x 25: rich would draw nothing at all.
MIN_WIDTH, MIN_HEIGHT = 20, 5


def make_console(out: Output, *, terminal: bool, width: int | None = None) -> Console:
    """A rich console writing to `out` that parses nothing as markup, emoji or a highlight."""
    console = Console(
        file=cast(IO[str], out),
        force_terminal=terminal,
        width=width,
        markup=False,
        emoji=False,
        highlight=False,
        soft_wrap=False,
    )
    size = console.size
    if size.width < MIN_WIDTH or size.height < MIN_HEIGHT:
        try:
            reported = os.get_terminal_size(out.fileno())
        except (OSError, ValueError):
            reported = os.terminal_size((80, 25))
        if size.width < MIN_WIDTH:
            console.width = reported.columns if reported.columns >= MIN_WIDTH else 80
        if size.height < MIN_HEIGHT:
            console.height = reported.lines if reported.lines >= MIN_HEIGHT else 25
    return console


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


def progress_output(out: Output) -> Output | None:
    """Where the live view goes beside JSON lines: standard error, when it is a terminal and
    standard output was sent to a file (`> out.jsonl`), not a terminal or a pipe (whose reader
    may well write to the same terminal)."""
    if interactive(out) or not interactive(sys.stderr):
        return None
    try:
        mode = os.fstat(out.fileno()).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
        return None
    return Output(sys.stderr)


def configure_logging(verbose: int) -> None:
    """Send jobpoll's log records to stderr with -v; otherwise nowhere (Python's last-resort
    handler would print its warnings, a second line beside the error the command reports)."""
    for handler in [h for h in logger.handlers if isinstance(h, StderrHandler)]:
        logger.removeHandler(handler)  # run() called again in the same process
    handler = StderrHandler(logging.NOTSET if verbose else logging.CRITICAL + 1)
    handler.setFormatter(logging.Formatter("jobpoll: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    if verbose:
        logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


class StderrHandler(logging.Handler):
    """Writes to whatever `sys.stderr` is at each record (the live view's proxy while it
    runs)."""

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            sys.stderr.write(printable(self.format(record)) + "\n")
            sys.stderr.flush()

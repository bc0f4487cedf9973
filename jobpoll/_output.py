"""Where the command writes: standard output (a terminal, a pipe, a file) and stderr's lines.

Imported by the command line only: rich is not needed to use jobpoll as a library.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any

import click

__all__ = ["configure_logging", "interactive", "say"]

logger = logging.getLogger("jobpoll")


def say(line: str) -> None:
    """One line on stderr (nothing when stderr cannot take it)."""
    with contextlib.suppress(OSError):
        click.echo(line, err=True)


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
                sys.stderr.write(self.format(record) + "\n")
                sys.stderr.flush()

"""The exit statuses of the `jobpoll` command, and the failure that ends a command with one.

Each status is declared once, with what it means for each command that can give it: the
help of `jobpoll`, `wait` and `status` is made from `EXIT_STATUSES`, and the README's table
is checked against it (`tests/test_readme.py`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import textwrap
from typing import IO

from jobpoll._errors import (
    ConfigurationError,
    Forbidden,
    JobPollError,
    TransportError,
    Unauthorized,
)

__all__ = [
    "EXIT_CLOSED_OUTPUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_STATUSES",
    "EXIT_TERMINATED",
    "EXIT_TIMEOUT",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Failure",
    "exit_status_help",
    "failure_for",
    "write_failure",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_UNREACHABLE = 4
#: 128 plus the signal's number, as a shell reports a command a signal ended: SIGINT (2),
#: SIGPIPE (13: the reader of the output went away) and SIGTERM (15).
EXIT_INTERRUPTED = 130
EXIT_CLOSED_OUTPUT = 141
EXIT_TERMINATED = 143

#: Each status and what it means, for `wait` (and the whole command) and for `status`; a
#: status `status` cannot give has no meaning there.
EXIT_STATUSES: tuple[tuple[int, str, str | None], ...] = (
    (
        EXIT_OK,
        "every job succeeded (FINISHED, or ARCHIVED)",
        "every job was read, and none has failed",
    ),
    (
        EXIT_FAILED,
        "some job ended unsuccessfully (FAILED, DIED, COULDNT_START, CANCELED, not found,"
        " stalled, a wrong answer)",
        "some job has failed (FAILED, DIED, COULDNT_START, CANCELED), or could not be read"
        " (not found, a wrong answer)",
    ),
    (
        EXIT_USAGE,
        "usage or configuration error: no key, a bad URL, a bad id",
        "usage or configuration error: no key, a bad URL, a bad id",
    ),
    (EXIT_TIMEOUT, "the --timeout passed before every job ended", None),
    (
        EXIT_UNREACHABLE,
        "the API refused the key, or could not be reached",
        "the API refused the key, or could not be reached",
    ),
    (
        EXIT_INTERRUPTED,
        "interrupted (Ctrl-C), after a clean stop",
        "interrupted (Ctrl-C), after a clean stop",
    ),
    (
        EXIT_CLOSED_OUTPUT,
        "the output was closed before the end (| head -1: the shell's status for SIGPIPE)",
        "the output was closed before the end (| head -1: the shell's status for SIGPIPE)",
    ),
)


def exit_status_help(command: str = "wait") -> str:
    """The exit statuses `command` ("wait" or "status") can give, as a help epilog (click
    keeps a paragraph starting with `\\b` as it is written)."""
    lines = ["\b", "Exit status:"]
    for code, for_wait, for_status in EXIT_STATUSES:
        meaning = for_status if command == "status" else for_wait
        if meaning is not None:
            lines.extend(
                textwrap.wrap(
                    meaning, width=70, initial_indent=f"  {code:<5}", subsequent_indent=" " * 7
                )
            )
    return "\n".join(lines) + "\n"


class Failure(Exception):
    """One line for stderr, and the exit status to go with it (no line when the message is
    empty: a closed output has nobody to tell)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def failure_for(error: JobPollError) -> Failure:
    """The failure for an error about the setup that ended a whole wait: a configuration
    error is 2; a refused key or an API never reached, 4."""
    if isinstance(error, ConfigurationError):
        return Failure(str(error), EXIT_USAGE)
    if isinstance(error, (Unauthorized, Forbidden)):
        return Failure(f"the API refused the key: {error}", EXIT_UNREACHABLE)
    if isinstance(error, TransportError):
        return Failure(f"cannot reach the API: {error}", EXIT_UNREACHABLE)
    return Failure(str(error), EXIT_FAILED)


def write_failure(error: Exception, stream: IO[str], name: str = "standard output") -> Failure:
    """How a command ends when writing `stream` failed with `error`: a closed pipe with 141
    and nothing to say, anything else with 1 and a line. `stream`'s descriptor is pointed at
    /dev/null, so that what is still buffered has somewhere to go at exit."""
    with contextlib.suppress(OSError, ValueError):
        descriptor = stream.fileno()
        sink = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(sink, descriptor)
        finally:
            os.close(sink)
    if isinstance(error, OSError) and error.errno == errno.EPIPE:
        return Failure("", EXIT_CLOSED_OUTPUT)
    reason = error.strerror if isinstance(error, OSError) and error.strerror else error
    return Failure(f"cannot write to {name} ({reason})", EXIT_FAILED)

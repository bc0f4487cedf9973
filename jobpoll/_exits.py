"""The exit statuses of the `jobpoll` command, each declared once with what it means (the
help and the table of docs/guides/cli.md are made or checked from here), and the failure that ends a
command with one."""

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

#: Each status and what it means for `wait` (and the whole command).
EXIT_STATUSES = {
    EXIT_OK: "every job succeeded (FINISHED, or ARCHIVED)",
    EXIT_FAILED: "some job ended unsuccessfully (FAILED, DIED, COULDNT_START, CANCELED,"
    " not found, stalled, a wrong answer)",
    EXIT_USAGE: "usage or configuration error: no key, a bad URL, a bad id, a bad --state file",
    EXIT_TIMEOUT: "the --timeout passed before every job ended",
    EXIT_UNREACHABLE: "the API refused the key, or could not be reached",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C), after a clean stop",
    EXIT_CLOSED_OUTPUT: "the output was closed before the end (| head -1: the shell's status"
    " for SIGPIPE)",
}
#: What `status` means otherwise by a status (None: it cannot give it).
STATUS_MEANINGS: dict[int, str | None] = {
    EXIT_OK: "every job was read, and none has failed",
    EXIT_FAILED: "some job has failed (FAILED, DIED, COULDNT_START, CANCELED), or could not"
    " be read (not found, a wrong answer)",
    EXIT_TIMEOUT: None,
}


def exit_status_help(command: str = "wait") -> str:
    """The exit statuses `command` ("wait" or "status") can give, as a help epilog (click
    keeps a paragraph starting with `\\b` as it is written)."""
    lines = ["\b", "Exit status:"]
    for code, for_wait in EXIT_STATUSES.items():
        meaning = STATUS_MEANINGS.get(code, for_wait) if command == "status" else for_wait
        if meaning is not None:
            lines += textwrap.wrap(
                meaning, width=70, initial_indent=f"  {code:<5}", subsequent_indent=" " * 7
            )
    return "\n".join(lines) + "\n"


class Failure(Exception):
    """One line for stderr, and the exit status to go with it (no line when the message is
    empty: a closed output has nobody to tell)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def failure_for(error: JobPollError, *, job_failed: bool = False) -> Failure:
    """The failure for an error about the setup that ended a whole wait: 2 for a configuration
    error; 4 for a refused key or an API never reached, unless a job failed (1)."""
    if isinstance(error, ConfigurationError):
        return Failure(str(error), EXIT_USAGE)
    unreachable = EXIT_FAILED if job_failed else EXIT_UNREACHABLE
    if isinstance(error, (Unauthorized, Forbidden)):
        return Failure(f"the API refused the key: {error}", unreachable)
    if isinstance(error, TransportError):
        return Failure(f"cannot reach the API: {error}", unreachable)
    return Failure(str(error), EXIT_FAILED)


def write_failure(error: Exception, stream: IO[str]) -> Failure:
    """How a command ends when writing `stream` failed: a closed pipe with 141 and nothing to
    say, else 1 and a line. `stream` is pointed at /dev/null for what is still buffered."""
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
    return Failure(f"cannot write to standard output ({reason})", EXIT_FAILED)

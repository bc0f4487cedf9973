"""`python -m jobpoll`, and the `jobpoll` console script: the command line, or one line
saying its `cli` extra is missing. Ctrl-C while its imports load ends it as Ctrl-C does later
(`jobpoll: interrupted`, status 130)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import NoReturn

# Declared again rather than imported: `jobpoll._exits` loads the heavy modules, and Ctrl-C's
# handler must be in place before they start.
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the `jobpoll` command line and exit with its status."""
    _open_closed_outputs()
    try:
        from jobpoll._cli import run
    except ImportError as exc:
        if exc.name not in ("click", "rich") and not str(exc.name).startswith(("click.", "rich.")):
            raise
        print(
            f"jobpoll: the command line needs the cli extra ({exc.name} is missing):"
            " pip install 'jobpoll[cli]'",
            file=sys.stderr,
        )
        sys.exit(EXIT_USAGE)
    try:
        if signal.getsignal(signal.SIGINT) is _interrupted_while_starting:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # the command's own
        status = run(argv)
    except KeyboardInterrupt:  # between the command's own handling of Ctrl-C and the exit
        status = _interrupted()
    sys.exit(status)


def _interrupted() -> int:
    with contextlib.suppress(OSError):  # no Python stream: one may be mid-write
        os.write(2, b"jobpoll: interrupted\n")
    return EXIT_INTERRUPTED


def _interrupted_while_starting(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(_interrupted())


def _open_closed_outputs() -> None:
    """A closed standard output or error (`>&-`: Python makes it None) writes to /dev/null,
    so the command runs as with its output discarded, its status saying how it ended."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115


# Only where Ctrl-C raises KeyboardInterrupt: a SIGINT the shell has the process ignore (a
# background job) stays ignored; and only in the main thread (the command line's).
if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGINT, _interrupted_while_starting)

if __name__ == "__main__":
    main()

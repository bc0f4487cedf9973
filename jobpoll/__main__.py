"""`python -m jobpoll`, and the `jobpoll` console script: the command line.

Its packages come with the `cli` extra (`pip install 'jobpoll[cli]'`); without them, this
says so in one line rather than with a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import NoReturn

#: The status for a command line that cannot run (as for any configuration error).
EXIT_USAGE = 2


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
    sys.exit(run(argv))


def _open_closed_outputs() -> None:
    """A closed standard output or error (`>&-`, which Python makes None) writes to
    /dev/null: the command runs as it would with its output discarded, and its status says
    how it ended. (A closed standard input is said to be closed when ids are read from it.)"""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115


if __name__ == "__main__":
    main()

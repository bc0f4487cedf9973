"""`python -m jobpoll`, and the `jobpoll` console script: the command line.

Its packages come with the `cli` extra (`pip install 'jobpoll[cli]'`); without them, this
says so in one line rather than with a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

#: The status for a command line that cannot run (as for any configuration error).
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the `jobpoll` command line and exit with its status."""
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


if __name__ == "__main__":
    main()

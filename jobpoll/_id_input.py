"""The job ids a command is given: as arguments, in files, on standard input, each checked
as it is read; where it came from (argument 3, line 7 of FILE) is made only for a wrong one."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from jobpoll._errors import InvalidJobId
from jobpoll._exits import Failure
from jobpoll._ids import check_job_id

#: The argument that stands for standard input.
STDIN = "-"
#: What is taken away around an id in a file: spaces, tabs, and a CRLF's carriage return.
_BLANKS = " \t\r"


def read_ids(arguments: Sequence[str], files: Sequence[str]) -> list[str]:
    """The distinct ids from the arguments (`-`: standard input) and files, in that order.

    Raises:
        Failure: an id that is wrong, a file that cannot be read, or no id at all (status 2).
    """
    ids: list[str] = []
    for position, value in enumerate(arguments, 1):
        if value == STDIN:
            ids.extend(_ids_in(STDIN))
        else:
            ids.append(_checked(value, f"argument {position}"))
    for name in files:
        ids.extend(_ids_in(name))
    if not ids:
        raise Failure("no job ids given: pass them as arguments, with -f FILE, or - for stdin")
    return list(dict.fromkeys(ids))


def _checked(job_id: str, where: str) -> str:
    try:
        return check_job_id(job_id)
    except InvalidJobId as exc:
        raise Failure(f"{where}: {exc}") from None


def _ids_in(source: str) -> Iterator[str]:
    """The ids of a file (`-`: standard input), one per line. Lines end at a line feed only:
    `str.splitlines` would also break at \\v, \\f, \\x85, U+2028 and others, making one
    wrong line into two ids each waited for, rather than one id refused."""
    name = "standard input" if source == STDIN else source
    text = _read_text(source, name)
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip(_BLANKS)
        if stripped and not stripped.startswith("#"):
            yield _checked(stripped, f"line {number} of {name}")


def _read_text(source: str, name: str) -> str:
    if source == STDIN and sys.stdin is None:  # `<&-`: Python makes it None
        raise Failure("cannot read ids from standard input (it is closed)")
    try:
        raw = sys.stdin.buffer.read() if source == STDIN else Path(source).read_bytes()
        return raw.decode("utf-8-sig")
    except OSError as exc:
        raise Failure(f"cannot read ids from {name} ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise Failure(f"cannot read ids from {name}: not UTF-8 text") from None

"""What a worker of `jobpoll.saq` logs: at INFO a line per wait started and one per wait
ended (jobpoll's), none per poll, and no job's kwargs (a wait's checkpoint, an outcome's job)
in any line, SAQ's own included.

SAQ logs each job it runs ("Processing", "Finished") and the jobs due at each tick
("Scheduled") at INFO, and a failed job with all its fields, kwargs and all, at ERROR.
`SaqLines`, a filter the worker puts on SAQ's logger (`saq`) while it runs, drops the first
for jobpoll's links (one a poll) unless that logger is enabled for DEBUG, and shortens every
job of jobpoll's functions (the poll's, `on_outcome`) to its function, key, attempts and
status.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from saq import Job as SaqJob

from jobpoll._models import JobResult
from jobpoll._saq_links import POLL_FUNCTION

logger = logging.getLogger("jobpoll")

#: SAQ's lines that a link makes at each poll.
_PER_POLL = frozenset({"Processing %s", "Finished %s", "Scheduled %s"})
#: A link's SAQ job id (`saq:job:<queue>:jobpoll:<job id>:<step>`), as "Scheduled" lists them.
_LINK_ID = re.compile(r":jobpoll:.+:[0-9]+\Z", re.DOTALL)


def wait_started(job_id: str) -> None:
    logger.info("job %s: wait started", job_id)


def wait_ended(result: JobResult, polls: int, took: float) -> None:
    status = "never seen" if result.job is None else result.job.raw_status
    how = "ok" if result.error is None else type(result.error).__name__
    logger.info(
        "job %s: wait ended, %s (%s), %d polls in %.1f s", result.job_id, how, status, polls, took
    )


def _about_a_link(arg: Any) -> bool:
    if isinstance(arg, SaqJob):
        return arg.function == POLL_FUNCTION
    return isinstance(arg, str) and arg.startswith(f"Job<function: {POLL_FUNCTION}, ")


def _without_links(arg: Any) -> Any:
    """`arg` without the links' ids if it is a list of job ids ("Scheduled")."""
    if not isinstance(arg, list):
        return arg
    return [job_id for job_id in arg if not (isinstance(job_id, str) and _LINK_ID.search(job_id))]


class SaqLines(logging.Filter):
    """Keeps SAQ's lines about the jobs of `functions` short, and drops those made per poll."""

    def __init__(self, functions: Iterable[str]) -> None:
        super().__init__()
        self.functions = frozenset({POLL_FUNCTION, *functions})
        self._prefixes = tuple(f"Job<function: {name}, " for name in self.functions)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not isinstance(args, tuple) or not args:
            return True
        if record.msg in _PER_POLL and not logging.getLogger("saq").isEnabledFor(logging.DEBUG):
            args = tuple(_without_links(arg) for arg in args)
            if any(arg == [] or _about_a_link(arg) for arg in args):
                return False
        record.args = tuple(self._short(arg) for arg in args)
        return True

    def _short(self, arg: Any) -> Any:
        if isinstance(arg, SaqJob) and arg.function in self.functions:
            fields = f"key: {arg.key}, attempts: {arg.attempts}, status: {arg.status.name.lower()}"
            return f"Job<function: {arg.function}, {fields}>"
        if isinstance(arg, str) and arg.startswith(self._prefixes):
            # `Job.info(full=True)` (SAQ's logger at DEBUG): "Job<function: f, kwargs: {...},
            # queue: q, key: k, ...>" (`queue` when it has one); the kwargs go.
            start = arg.find(", kwargs: ")
            after = [arg.rfind(field) for field in (", queue: ", ", key: ")]
            end = min((at for at in after if at > start), default=-1)
            if 0 < start < end:
                return arg[:start] + ", kwargs: {...}" + arg[end:]
        return arg

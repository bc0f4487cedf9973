"""How `jobpoll wait` shows a wait: a live view at a terminal (rich), JSON lines elsewhere.

A `Board` keeps what is known of every job, updated from the fan-out's `on_update` and its
results; a view reads it. The board's cost per change is a few dictionary operations; a job's
time left is read from its own schedule in the fan-out (no second model), once per refresh
for a few jobs and once a second for many; the live view draws from the board's totals (and,
for a few jobs, their rows), so that thousands of jobs cost little beside their polls.
Nothing here runs in another thread: the view is refreshed from the event loop, between
polls.

Imported by the command line only: rich is not needed to use jobpoll as a library.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import IO, Any, Protocol

import attrs
from rich.console import Console, Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from jobpoll._errors import (
    ApiError,
    DecodeError,
    JobFailedError,
    JobPollError,
    JobStalled,
    NotFound,
    TransportError,
    WaitTimeout,
)
from jobpoll._fanout import JobsWait
from jobpoll._models import Job, JobResult, JobStatus

__all__ = [
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_UNREACHABLE",
    "Board",
    "JsonLines",
    "LiveView",
    "Summary",
    "TerminalSummary",
    "View",
    "describe_error",
    "outcome_of",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_TIMEOUT = 3
EXIT_UNREACHABLE = 4

SUCCEEDED = "succeeded"
FAILED = "failed"
UNREACHABLE = "unreachable"
TIMED_OUT = "timed out"

#: Statuses of a job that has not started running.
_QUEUED = frozenset(
    {JobStatus.CREATED, JobStatus.PERSISTED, JobStatus.SCHEDULED, JobStatus.WAITING}
)


def outcome_of(result: JobResult) -> str:
    """What a result counts as: succeeded; timed out (`WaitTimeout`); unreachable (the API
    could not be reached or kept failing: a transient error past the policy's retries); or
    failed (the job ended unsuccessfully, is not found, or its answers were wrong)."""
    error = result.error
    if error is None:
        return SUCCEEDED
    if isinstance(error, WaitTimeout):
        return TIMED_OUT
    if error.transient:
        return UNREACHABLE
    return FAILED


class Row:
    """One job on the board."""

    __slots__ = ("ended_at", "job", "job_id", "result")

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.job: Job | None = None
        self.result: JobResult | None = None
        self.ended_at: float | None = None


class Board:
    """What is known of each job of a wait, and the totals the views show.

    Each job's time left is the one its own schedule in the fan-out measured (`Pace.time_left`
    through `JobsWait._time_left`), read at most once per `refresh_estimates`: the board keeps
    no model of its own.

    Args:
        job_ids: the distinct ids, in the order given.
        clock: the wait's clock (its policy's).
        recent: how many recent changes to keep.
    """

    def __init__(
        self,
        job_ids: Sequence[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        recent: int = 12,
    ) -> None:
        self.rows = {job_id: Row(job_id) for job_id in job_ids}
        self._folded: dict[str, Row] | None = None
        self.clock = clock
        self._left: dict[str, float | None] = {}
        self._left_at = -math.inf
        self.started = clock()
        self.fanout: JobsWait | None = None
        self.total = len(self.rows)
        self.seen = 0
        self.queued = 0
        self.ended = 0
        self.outcomes = {SUCCEEDED: 0, FAILED: 0, UNREACHABLE: 0, TIMED_OUT: 0}
        self.unsuccessful: list[Row] = []
        # (when, id, the snapshot or the unsuccessful result): made into text only when shown.
        self.recent: deque[tuple[float, str, Job | JobResult]] = deque(maxlen=recent)
        self._progress = 0  # the sum of every job's progress, ended jobs counting 100

    @property
    def percent(self) -> float:
        """How far the whole wait is, in percent: each job's progress, ended ones at 100."""
        return self._progress / self.total if self.total else 100.0

    @property
    def polls(self) -> int:
        return self.fanout.polls if self.fanout is not None else 0

    @property
    def in_flight(self) -> int:
        return self.fanout.in_flight if self.fanout is not None else 0

    def elapsed(self, now: float | None = None) -> float:
        return (self.clock() if now is None else now) - self.started

    def _row(self, job: Job) -> Row | None:
        row = self.rows.get(job.id)
        if row is None:  # the server may answer with the id in another case
            if self._folded is None:
                self._folded = {job_id.casefold(): row for job_id, row in self.rows.items()}
            row = self._folded.get(job.id.casefold())
        return row

    def changed(self, job: Job) -> Row | None:
        """Take in a snapshot from `on_update` (the first, a change, or the last)."""
        row = self._row(job)
        if row is None or row.ended_at is not None:
            return None
        now = self.clock()
        last = row.job
        if last is None:
            self.seen += 1
        else:
            self._progress -= last.progress
            self.queued -= last.status in _QUEUED
        self._progress += job.progress
        self.queued += job.status in _QUEUED
        row.job = job
        self.recent.append((now, row.job_id, job))
        return row

    def ended_with(self, result: JobResult) -> Row:
        """Take in a job's result."""
        row = self.rows[result.job_id]
        now = self.clock()
        if row.job is not None:
            self._progress -= row.job.progress
            self.queued -= row.job.status in _QUEUED
        elif result.job is not None:
            self.seen += 1
        if result.job is not None:
            row.job = result.job
        self._progress += 100
        row.result, row.ended_at = result, now
        self.ended += 1
        outcome = outcome_of(result)
        self.outcomes[outcome] += 1
        if outcome != SUCCEEDED:
            self.unsuccessful.append(row)
            if not isinstance(result.error, JobFailedError):  # else its last change says it
                self.recent.append((now, row.job_id, result))
        return row

    def refresh_estimates(self, now: float, *, every: float = 0.0) -> None:
        """Read each waiting job's time left from the fan-out's schedules, unless it was read
        less than `every` seconds ago (a pass over every waiting job)."""
        if self.fanout is not None and now - self._left_at >= every:
            self._left = self.fanout._time_left()
            self._left_at = now

    def time_left(self, row: Row, now: float) -> float | None:
        """A job's time left at the pace its schedule measured (as last read), or None."""
        left = self._left.get(row.job_id)
        return None if left is None else max(0.0, left - (now - self._left_at))

    def longest_time_left(self, now: float) -> float | None:
        """The longest time left among the waiting jobs whose progress has moved."""
        known = [left for left in self._left.values() if left is not None]
        return max(0.0, max(known) - (now - self._left_at)) if known else None

    def exit_code(self) -> int:
        """1 when a job failed, else 4 when the API could not be reached for one, else 3
        when one timed out, else 0."""
        outcomes = self.outcomes
        if outcomes[FAILED]:
            return EXIT_FAILED
        if outcomes[UNREACHABLE]:
            return EXIT_UNREACHABLE
        if outcomes[TIMED_OUT]:
            return EXIT_TIMEOUT
        return EXIT_OK


@attrs.frozen
class Summary:
    """How the wait ended, for the last line or lines."""

    exit_code: int
    interrupted: bool = False
    stopped_early: bool = False  # --fail-fast
    error: str | None = None  # an error about the setup, which ended the wait


class View(Protocol):
    """What the command tells a view; `interval` is how often it wants `tick()`."""

    interval: float

    def start(self) -> None: ...
    def changed(self, row: Row) -> None: ...
    def ended(self, row: Row) -> None: ...
    def tick(self) -> None: ...
    def stop(self, summary: Summary) -> None: ...


# JSON lines --------------------------------------------------------------------------------


class JsonLines:
    """One JSON object per line: a `change` for each snapshot, an `outcome` per job, a
    `heartbeat` after `heartbeat` seconds without a line, and a `summary` last.

    With `quiet`, only the outcomes and the summary. Each line is flushed as it is written,
    so a reader (`jq`, a CI log) sees it at once.
    """

    def __init__(
        self, board: Board, out: IO[str], *, heartbeat: float, quiet: bool = False
    ) -> None:
        self._board = board
        self._out = out
        self._heartbeat = heartbeat
        self._quiet = quiet
        self._last_line = board.started
        self.interval = min(1.0, max(0.05, heartbeat / 4))

    def _write(self, line: dict[str, Any], now: float) -> None:
        self._out.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._out.flush()
        self._last_line = now

    def start(self) -> None:
        pass

    def changed(self, row: Row) -> None:
        if self._quiet or row.job is None:
            return
        board = self._board
        now = board.clock()
        line = {
            "event": "change",
            "elapsed": round(board.elapsed(now), 3),
            "jobId": row.job_id,
            "job": row.job.to_dict(),
        }
        self._write(line, now)

    def ended(self, row: Row) -> None:
        assert row.result is not None
        board = self._board
        now = board.clock()
        line = {"event": "outcome", "elapsed": round(board.elapsed(now), 3)}
        line.update(row.result.to_dict())
        line["ok"] = row.result.ok
        line["outcome"] = outcome_of(row.result)
        self._write(line, now)

    def tick(self) -> None:
        board = self._board
        now = board.clock()
        if self._quiet or now - self._last_line < self._heartbeat:
            return
        line = {
            "event": "heartbeat",
            "elapsed": round(board.elapsed(now), 3),
            "total": board.total,
            "ended": board.ended,
            "percent": round(board.percent, 1),
            "polls": board.polls,
            "inFlight": board.in_flight,
        }
        self._write(line, now)

    def stop(self, summary: Summary) -> None:
        board = self._board
        now = board.clock()
        outcomes = board.outcomes
        line = {
            "event": "summary",
            "elapsed": round(board.elapsed(now), 3),
            "total": board.total,
            "succeeded": outcomes[SUCCEEDED],
            "failed": outcomes[FAILED],
            "unreachable": outcomes[UNREACHABLE],
            "timedOut": outcomes[TIMED_OUT],
            "notEnded": board.total - board.ended,
            "polls": board.polls,
            "exitCode": summary.exit_code,
            "interrupted": summary.interrupted,
            "stoppedEarly": summary.stopped_early,
            "error": summary.error,
        }
        self._write(line, now)


# At a terminal ------------------------------------------------------------------------------


def _clock_text(seconds: float) -> str:
    seconds = max(0, math.floor(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _left_text(left: float | None) -> str:
    if left is None:
        return "-"
    if left <= 0:
        return "soon"
    return "~" + _clock_text(math.ceil(left))


def _status_style(job: Job) -> str:
    status = job.status
    if status.succeeded:
        return "green"
    if status.failed:
        return "red"
    if status is JobStatus.ARCHIVED:
        return "green dim"
    if status in _QUEUED:
        return "yellow"
    if status is JobStatus.UNKNOWN:
        return "magenta"
    return "cyan"


def _short_error(result: JobResult) -> str:
    """A few words on how a job ended unsuccessfully (the JSON lines have the whole error)."""
    error = result.error
    job = result.job
    if isinstance(error, JobFailedError):
        return f"{error.job.raw_status} at {error.job.progress}%"
    if isinstance(error, WaitTimeout):
        seen = f"last seen {job.raw_status} at {job.progress}%" if job else "never seen"
        return f"timed out, {seen}"
    assert error is not None
    return describe_error(error)


def describe_error(error: JobPollError) -> str:
    """An error in a few words, without the job id its message repeats."""
    if isinstance(error, NotFound):
        return "not found (HTTP 404)"
    if isinstance(error, ApiError):
        return f"HTTP {error.http_status}" + (f": {error.message}" if error.message else "")
    if isinstance(error, DecodeError):
        return f"invalid answer ({error.field or 'body'})"
    if isinstance(error, TransportError):
        return "no answer" + ("" if error.reached else " (cannot connect)")
    if isinstance(error, JobStalled):
        return f"stalled at {error.job.progress}% for {error.unchanged_for:.0f} s"
    return type(error).__name__


class TerminalSummary:
    """The lines after a wait at a terminal: the totals, then the jobs that did not succeed
    (up to `shown`; the JSON lines list every one)."""

    def __init__(self, board: Board, console: Console, *, shown: int = 10) -> None:
        self._board = board
        self._console = console
        self._shown = shown

    def render(self, summary: Summary) -> RenderableType:
        board = self._board
        outcomes = board.outcomes
        text = Text()
        jobs = "job" if board.total == 1 else "jobs"
        text.append(f"{board.total:,} {jobs} in {_clock_text(board.elapsed())}: ", style="bold")
        parts = [(f"{outcomes[SUCCEEDED]:,} succeeded", "green")]
        for outcome, style in ((FAILED, "red"), (UNREACHABLE, "red"), (TIMED_OUT, "yellow")):
            if outcomes[outcome]:
                parts.append((f"{outcomes[outcome]:,} {outcome}", style))
        not_ended = board.total - board.ended
        if not_ended:
            parts.append((f"{not_ended:,} not ended", "yellow"))
        for index, (part, style) in enumerate(parts):
            text.append((", " if index else "") + part, style=style)
        text.append(f"; {board.polls:,} polls")
        if summary.interrupted:
            text.append(" (interrupted)", style="yellow")
        elif summary.stopped_early:
            text.append(" (stopped at the first failure: --fail-fast)", style="yellow")
        lines: list[RenderableType] = [text]
        shown = board.unsuccessful[: self._shown]
        if shown:
            table = Table.grid(padding=(0, 2))
            table.add_column(no_wrap=True)
            table.add_column(overflow="ellipsis", no_wrap=True)
            for row in shown:
                assert row.result is not None
                table.add_row(Text(row.job_id, style="red"), _short_error(row.result))
            lines.append(table)
            more = len(board.unsuccessful) - len(shown)
            if more:
                lines.append(Text(f"... and {more:,} more (--json lists every outcome)"))
        return Group(*lines)

    def start(self) -> None:
        pass

    def changed(self, row: Row) -> None:
        pass

    def ended(self, row: Row) -> None:
        pass

    interval = 1.0

    def tick(self) -> None:
        pass

    def stop(self, summary: Summary) -> None:
        self._console.print(self.render(summary))


class LiveView(TerminalSummary):
    """A live view at a terminal: a row per job (status, bar, percent, elapsed, time left)
    for up to `rows` jobs; beyond, one bar for the whole wait, the totals and the most recent
    changes. Then the summary."""

    def __init__(self, board: Board, console: Console, *, title: str, rows: int = 20) -> None:
        super().__init__(board, console)
        self._title = title
        height = console.size.height
        self._per_job = board.total <= min(rows, max(3, height - 6))
        self._recent = max(3, min(board.recent.maxlen or 12, height - 8))
        # Elapsed times are shown in whole seconds: a few rows are redrawn four times a second,
        # the totals of many once a second (a pass over every waiting job's schedule).
        self.interval = 0.25 if self._per_job else 1.0
        self._live: Any = None

    def start(self) -> None:
        from rich.live import Live

        self._live = Live(
            console=self._console,
            get_renderable=self._render,
            auto_refresh=False,  # refreshed from the event loop: no thread reads the board
            transient=False,
            # With -v, log lines written to stderr go above the view rather than through it.
            redirect_stdout=False,
            redirect_stderr=True,
        )
        self._live.start(refresh=True)

    def tick(self) -> None:
        if self._live is not None:
            self._board.refresh_estimates(self._board.clock())
            self._live.refresh()

    def stop(self, summary: Summary) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        super().stop(summary)

    def _render(self) -> RenderableType:
        board = self._board
        now = board.clock()
        head = Text()
        head.append(self._title, style="bold")
        head.append(f"  {board.polls:,} polls, {board.in_flight} in flight", style="dim")
        if self._per_job:
            return Group(head, self._job_table(now))
        return Group(head, *self._totals(now))

    def _job_table(self, now: float) -> Table:
        board = self._board
        table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold dim")
        table.add_column("job", no_wrap=True, overflow="ellipsis", max_width=40)
        table.add_column("status", no_wrap=True)
        table.add_column("progress", no_wrap=True, width=24)
        table.add_column("%", justify="right", no_wrap=True)
        table.add_column("elapsed", justify="right", no_wrap=True)
        table.add_column("left", justify="right", no_wrap=True)
        for row in board.rows.values():
            job, result = row.job, row.result
            if result is not None and not result.ok:
                status = Text(_status_word(result), style="red")
            elif job is not None:
                status = Text(job.raw_status, style=_status_style(job))
            else:
                status = Text("not seen yet", style="dim")
            progress = 0 if job is None else job.progress
            if result is not None and result.ok:
                progress = 100 if job is None or job.succeeded else progress
            ended = row.ended_at is not None
            elapsed = (row.ended_at if row.ended_at is not None else now) - board.started
            left = "" if ended else _left_text(board.time_left(row, now))
            bar = ProgressBar(
                total=100,
                completed=progress,
                width=24,
                complete_style="red" if result is not None and not result.ok else "green",
                finished_style="green",
            )
            table.add_row(row.job_id, status, bar, f"{progress}%", _clock_text(elapsed), left)
        return table

    def _totals(self, now: float) -> list[RenderableType]:
        board = self._board
        left = board.longest_time_left(now)
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(no_wrap=True)
        percent = board.percent
        waiting = board.total - board.ended
        times = f"{_clock_text(board.elapsed(now))} elapsed"
        if waiting:
            times += f", {_left_text(left)} left"
        grid.add_row(
            ProgressBar(total=100, completed=percent, width=40), f"{math.floor(percent)}%", times
        )
        outcomes = board.outcomes
        counts = Text()
        counts.append(f"{board.ended:,} ended: ")
        counts.append(f"{outcomes[SUCCEEDED]:,} succeeded", style="green")
        for outcome, style in ((FAILED, "red"), (UNREACHABLE, "red"), (TIMED_OUT, "yellow")):
            if outcomes[outcome]:
                counts.append(f", {outcomes[outcome]:,} {outcome}", style=style)
        unseen = board.total - board.seen
        if waiting:
            counts.append(f"   {waiting:,} waiting: {board.queued:,} queued")
        if unseen:
            counts.append(f", {unseen:,} not seen yet", style="dim")
        # Plain lines rather than a table: drawn every second, they should cost little.
        recent = Text(no_wrap=True, overflow="ellipsis")
        changes = list(board.recent)[-self._recent :]
        width = max((len(job_id) for _, job_id, _ in changes), default=0)
        for at, job_id, what in reversed(changes):
            recent.append(f"{_clock_text(at - board.started)}  ", style="dim")
            recent.append(f"{job_id:<{width}}  ")
            if isinstance(what, Job):
                recent.append(f"{what.raw_status} {what.progress}%", style=_status_style(what))
            else:
                recent.append(_short_error(what), style="red")
            recent.append("\n")
        recent.rstrip()
        return [grid, counts, Text("recent changes", style="bold dim"), recent]


def _status_word(result: JobResult) -> str:
    error = result.error
    if isinstance(error, JobFailedError):
        return error.job.raw_status
    if isinstance(error, WaitTimeout):
        return "timed out"
    return type(error).__name__

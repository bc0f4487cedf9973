"""How `jobpoll wait` shows a wait: a live view at a terminal (rich), JSON lines elsewhere,
each drawn from a `Board` from the event loop between polls."""

from __future__ import annotations

import math
from typing import Any

import attrs
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from jobpoll._board import FAILED, SUCCEEDED, TIMED_OUT, UNREACHABLE, Board, Row, outcome_of
from jobpoll._errors import (
    ApiError,
    DecodeError,
    JobFailedError,
    JobStalled,
    NotFound,
    TransportError,
    WaitTimeout,
)
from jobpoll._models import Job, JobResult, JobStatus
from jobpoll._output import Output, interactive, make_console, plain
from jobpoll._pace import QUEUED


@attrs.frozen
class Summary:
    """How the wait ended, for the last line or lines."""

    exit_code: int
    interrupted: bool = False
    stopped_early: bool = False  # --fail-fast
    error: str | None = None  # an error about the setup, which ended the wait


class View:
    """What the command tells a view, each doing nothing unless the view says otherwise;
    `interval` is how often it wants `tick()`."""

    interval = 1.0

    def start(self) -> None: ...
    def changed(self, row: Row) -> None: ...
    def ended(self, result: JobResult) -> None: ...
    def tick(self) -> None: ...
    def stop(self, summary: Summary) -> None: ...


def make_view(
    out: Output,
    board: Board,
    *,
    as_json: bool,
    quiet: bool,
    heartbeat: float,
    title: str,
    run: int | None = None,
    progress: Output | None = None,
) -> View:
    """JSON lines off a terminal or with --json, else the live view (only the summary: --quiet).
    Beside JSON lines, the live view goes to `progress` when given (stderr at a terminal, as
    `gh run watch` and `docker compose` do), unless --quiet."""
    if as_json or not interactive(out):
        lines = JsonLines(board, out, heartbeat=heartbeat, quiet=quiet, run=run)
        if progress is None or quiet:
            return lines
        return Views(lines, LiveView(board, make_console(progress, terminal=True), title=title))
    console = make_console(out, terminal=True)
    if quiet:
        return TerminalSummary(board, console)
    return LiveView(board, console, title=title)


class Views(View):
    """Several views of one wait, each told everything: JSON lines for a file and the live
    view for the terminal."""

    def __init__(self, *views: View) -> None:
        self._views = views
        self.interval = min(view.interval for view in views)

    def start(self) -> None:
        for view in self._views:
            view.start()

    def changed(self, row: Row) -> None:
        for view in self._views:
            view.changed(row)

    def ended(self, result: JobResult) -> None:
        for view in self._views:
            view.ended(result)

    def tick(self) -> None:
        for view in self._views:
            view.tick()

    def stop(self, summary: Summary) -> None:
        for view in self._views:
            view.stop(summary)


class JsonLines(View):
    """The JSON lines `jobpoll wait --help` describes, each flushed as written; with `quiet`,
    only the outcomes and the summary; with `run` (a wait kept in a state file), each line
    says which run of the wait wrote it."""

    def __init__(
        self,
        board: Board,
        out: Output,
        *,
        heartbeat: float,
        quiet: bool = False,
        run: int | None = None,
    ) -> None:
        self._board = board
        self._out = out
        self._heartbeat = heartbeat
        self._quiet = quiet
        self._run = {} if run is None else {"run": run}
        self._last_line = board.started
        self.interval = min(1.0, max(0.05, heartbeat / 4))

    def _write(self, event: str, fields: dict[str, Any]) -> None:
        now = self._board.clock()
        elapsed = round(self._board.elapsed(now), 3)
        self._out.write_json({"event": event, "elapsed": elapsed, **self._run, **fields})
        self._last_line = now

    def changed(self, row: Row) -> None:
        if not self._quiet and row.job is not None:
            self._write("change", {"jobId": row.job_id, "job": row.job.to_dict()})

    def ended(self, result: JobResult) -> None:
        self._write("outcome", {**result.to_dict(), "ok": result.ok, "outcome": outcome_of(result)})

    def tick(self) -> None:
        board = self._board
        if self._quiet or board.clock() - self._last_line < self._heartbeat:
            return
        self._write(
            "heartbeat",
            {
                "total": board.total,
                "ended": board.ended,
                "percent": round(board.percent, 1),
                "polls": board.polls,
                "inFlight": board.in_flight,
            },
        )

    def stop(self, summary: Summary) -> None:
        board = self._board
        # A run of a wait kept in a state file says what the runs before it reported: the
        # exit status counts those too.
        earlier = {"earlier": _counts(board.earlier)} if self._run else {}
        self._write(
            "summary",
            {
                "total": board.total,
                **_counts(board.outcomes),
                "notEnded": board.total - board.ended,
                "polls": board.polls,
                "exitCode": summary.exit_code,
                "interrupted": summary.interrupted,
                "stoppedEarly": summary.stopped_early,
                "error": summary.error,
                **earlier,
            },
        )


def _counts(outcomes: dict[str, int]) -> dict[str, int]:
    """Counts of outcomes as the JSON lines name them."""
    return {
        "succeeded": outcomes[SUCCEEDED],
        "failed": outcomes[FAILED],
        "unreachable": outcomes[UNREACHABLE],
        "timedOut": outcomes[TIMED_OUT],
    }


def clock_text(seconds: float) -> str:
    seconds = max(0, math.floor(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _left_text(left: float | None) -> str:
    if left is None:
        return "-"
    if left <= 0:
        return "soon"
    return "~" + clock_text(math.ceil(left))


def status_style(job: Job) -> str:
    status = job.status
    if status.succeeded:
        return "green"
    if status.failed:
        return "red"
    if status is JobStatus.ARCHIVED:
        return "green dim"
    if status in QUEUED:
        return "yellow"
    if status is JobStatus.UNKNOWN:
        return "magenta"
    return "cyan"


def describe_error(result: JobResult) -> str:
    """How a job ended unsuccessfully, in a few words (the JSON lines have the whole error)."""
    error, job = result.error, result.job
    if isinstance(error, JobFailedError):
        return f"{error.job.raw_status} at {error.job.progress}%"
    if isinstance(error, WaitTimeout):
        seen = f"last seen {job.raw_status} at {job.progress}%" if job else "never seen"
        return f"timed out, {seen}"
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


class TerminalSummary(View):
    """The lines after a wait at a terminal: the totals, then the jobs that did not succeed
    (up to `shown`; the JSON lines list every one)."""

    def __init__(self, board: Board, console: Console, *, shown: int = 10) -> None:
        self._board = board
        self._console = console
        self._shown = shown

    def stop(self, summary: Summary) -> None:
        board = self._board
        jobs = "job" if board.total == 1 else "jobs"
        text = plain(f"{board.total:,} {jobs} in {clock_text(board.elapsed())}: ", "bold")
        parts = _outcome_counts(board.outcomes)
        not_ended = board.total - board.ended
        if not_ended:
            parts.append(plain(f"{not_ended:,} not ended", "yellow"))
        text.append(plain(", ").join(parts))
        text.append(plain(f"; {board.polls:,} polls"))
        earlier = sum(board.earlier.values())
        if earlier:  # a wait kept in a state file: its status counts these too
            text.append(plain(f"; before this run, {earlier:,} ended: "))
            text.append(plain(", ").join(_outcome_counts(board.earlier)))
        if summary.interrupted:
            text.append(plain(" (interrupted)", "yellow"))
        elif summary.stopped_early:
            text.append(plain(" (stopped at the first failure: --fail-fast)", "yellow"))
        self._console.print(Group(text, *self._unsuccessful()))

    def _unsuccessful(self) -> list[RenderableType]:
        board = self._board
        shown = board.unsuccessful[: self._shown]
        if not shown:
            return []
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True)
        table.add_column(overflow="ellipsis", no_wrap=True)
        for row in shown:
            assert row.result is not None
            table.add_row(plain(row.job_id, "red"), plain(describe_error(row.result)))
        more = len(board.unsuccessful) - len(shown)
        if not more:
            return [table]
        return [table, plain(f"... and {more:,} more (--json lists every outcome)")]


def _outcome_counts(outcomes: dict[str, int]) -> list[Text]:
    counts = [plain(f"{outcomes[SUCCEEDED]:,} succeeded", "green")]
    for outcome, style in ((FAILED, "red"), (UNREACHABLE, "red"), (TIMED_OUT, "yellow")):
        if outcomes[outcome]:
            counts.append(plain(f"{outcomes[outcome]:,} {outcome}", style))
    return counts


class LiveView(TerminalSummary):
    """The live view `jobpoll wait --help` describes (a row per job for up to `rows` jobs),
    then the summary."""

    def __init__(self, board: Board, console: Console, *, title: str, rows: int = 20) -> None:
        super().__init__(board, console)
        self._title = title
        height = console.size.height
        self._per_job = board.total <= min(rows, max(3, height - 6))
        self._recent = max(3, min(board.recent.maxlen or 12, height - 8))
        # Elapsed times are shown in whole seconds: a few rows are redrawn four times a second,
        # the totals of many once a second (a pass over every waiting job's schedule).
        self.interval = 0.25 if self._per_job else 1.0
        self._live: Live | None = None

    def start(self) -> None:
        self._live = Live(
            console=self._console,
            get_renderable=self._render,
            auto_refresh=False,  # refreshed from the event loop: no thread reads the board
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
        head = plain(self._title, "bold")
        head.append(plain(f"  {board.polls:,} polls, {board.in_flight} in flight", "dim"))
        if self._per_job:
            return Group(head, self._job_table(now))
        return Group(head, *self._totals(now))

    def _job_table(self, now: float) -> Table:
        table = Table(box=None, pad_edge=False, padding=(0, 1), header_style="bold dim")
        table.add_column("job", no_wrap=True, overflow="ellipsis", max_width=40)
        table.add_column("status", no_wrap=True)
        table.add_column("progress", no_wrap=True, width=24)
        table.add_column("%", justify="right", no_wrap=True)
        table.add_column("elapsed", justify="right", no_wrap=True)
        table.add_column("left", justify="right", no_wrap=True)
        for row in self._board.rows.values():
            table.add_row(*self._job_row(row, now))
        return table

    def _job_row(self, row: Row, now: float) -> tuple[RenderableType, ...]:
        board = self._board
        unsuccessful = row.result is not None and not row.result.ok
        progress = _progress_of(row)
        if row.ended_at is None:
            elapsed, left = now - board.started, _left_text(board.time_left(row, now))
        else:
            elapsed, left = row.ended_at - board.started, ""
        bar = ProgressBar(
            total=100,
            completed=progress,
            width=24,
            complete_style="red" if unsuccessful else "green",
            finished_style="green",
        )
        return (
            plain(row.job_id),
            _status_of(row),
            bar,
            plain(f"{progress}%"),
            plain(clock_text(elapsed)),
            plain(left),
        )

    def _totals(self, now: float) -> list[RenderableType]:
        board = self._board
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(justify="right", no_wrap=True)
        grid.add_column(no_wrap=True)
        percent = board.percent
        waiting = board.total - board.ended
        times = f"{clock_text(board.elapsed(now))} elapsed"
        if waiting:
            times += f", {_left_text(board.longest_time_left(now))} left"
        grid.add_row(
            ProgressBar(total=100, completed=percent, width=40),
            plain(f"{math.floor(percent)}%"),
            plain(times),
        )
        counts = plain(f"{board.ended:,} ended: ")
        counts.append(plain(", ").join(_outcome_counts(board.outcomes)))
        if waiting:
            counts.append(plain(f"   {waiting:,} waiting: {board.queued:,} queued"))
        if board.unseen:
            counts.append(plain(f", {board.unseen:,} not seen yet", "dim"))
        return [grid, counts, plain("recent changes", "bold dim"), self._recent_changes()]

    def _recent_changes(self) -> Text:
        # Plain lines rather than a table: drawn every second, they should cost little.
        board = self._board
        recent = Text(no_wrap=True, overflow="ellipsis")
        changes = list(board.recent)[-self._recent :]
        width = max((len(job_id) for _, job_id, _ in changes), default=0)
        for at, job_id, what in reversed(changes):
            recent.append(plain(f"{clock_text(at - board.started)}  ", "dim"))
            recent.append(plain(f"{job_id:<{width}}  "))
            if isinstance(what, Job):
                recent.append(plain(f"{what.raw_status} {what.progress}%", status_style(what)))
            else:
                recent.append(plain(describe_error(what), "red"))
            recent.append("\n")
        recent.rstrip()
        return recent


def _status_of(row: Row) -> Text:
    error = None if row.result is None else row.result.error
    if isinstance(error, JobFailedError):
        return plain(error.job.raw_status, "red")
    if isinstance(error, WaitTimeout):
        return plain("timed out", "red")
    if error is not None:
        return plain(type(error).__name__, "red")
    if row.job is not None:
        return plain(row.job.raw_status, status_style(row.job))
    return plain("not seen yet", "dim")


def _progress_of(row: Row) -> int:
    """A job's progress in its row: 100 once it succeeded (an ARCHIVED job may say less)."""
    job, result = row.job, row.result
    if result is not None and result.ok and (job is None or job.succeeded):
        return 100
    return 0 if job is None else job.progress

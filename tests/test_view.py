"""The board and the views of `jobpoll wait`, in-process on a clock of the test's own: what is
counted, which status a wait ends with, the JSON lines, and what a terminal is shown."""

from __future__ import annotations

import io
import json
import math
import random
from datetime import UTC, datetime

import attrs
import pytest
from rich.console import Console

from jobpoll import (
    BadRequest,
    Job,
    JobFailedError,
    JobResult,
    JobsClient,
    JobStatus,
    NotFound,
    PollPolicy,
    ServerError,
    TransportError,
    WaitTimeout,
    wait_for_jobs,
)
from jobpoll._board import Board, outcome_of
from jobpoll._output import Output
from jobpoll._view import JsonLines, LiveView, Summary
from jobpoll.testing import FakeJobsService, HttpError, Slow, VirtualClock

CREATED = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def job(job_id: str, progress: int = 0, status: str = "RUNNING") -> Job:
    return Job(
        id=job_id,
        created_at=CREATED,
        progress=progress,
        status=JobStatus.parse(status),
        raw_status=status,
    )


def board_of(*ids: str) -> tuple[Board, Clock]:
    clock = Clock()
    return Board(list(ids), clock=clock), clock


def test_outcomes() -> None:
    """A result counts as succeeded, failed, timed out, or unreachable (a transient error
    past the retries)."""
    done = job("a", 100, "FINISHED")
    died = job("a", 60, "DIED")
    assert outcome_of(JobResult("a", done)) == "succeeded"
    assert outcome_of(JobResult("a", died, JobFailedError(died))) == "failed"
    assert outcome_of(JobResult("a", None, NotFound(404, job_id="a"))) == "failed"
    assert outcome_of(JobResult("a", None, WaitTimeout("a", timeout=1))) == "timed out"
    assert outcome_of(JobResult("a", None, ServerError(500, job_id="a"))) == "unreachable"
    assert outcome_of(JobResult("a", None, TransportError("x", job_id="a"))) == "unreachable"


@pytest.mark.parametrize(
    ("ends", "status"),
    [
        pytest.param(["ok", "ok"], 0, id="all-ok"),
        pytest.param(["ok", "timeout"], 3, id="timeout"),
        pytest.param(["timeout", "unreachable"], 4, id="unreachable-over-timeout"),
        pytest.param(["unreachable", "failed", "timeout"], 1, id="failed-over-all"),
    ],
)
def test_exit_status_precedence(ends: list[str], status: int) -> None:
    """1 when a job failed, else 4 when the API could not be reached, else 3 for a timeout."""
    ids = [f"j{n}" for n in range(len(ends))]
    board, _ = board_of(*ids)
    errors = {
        "ok": None,
        "timeout": WaitTimeout("x", timeout=1),
        "unreachable": TransportError("x"),
        "failed": NotFound(404),
    }
    for job_id, end in zip(ids, ends, strict=True):
        board.ended_with(JobResult(job_id, job(job_id, 100, "FINISHED"), errors[end]))
    assert board.exit_code() == status


def test_board_counts_and_percent() -> None:
    """Progress adds up over jobs (ended ones at 100), queued and unseen jobs are counted,
    and each change is recent (an id the server writes in another case comes back from the
    client as it was asked: `test_client.py::test_id_in_another_case_is_the_asked_id`)."""
    board, clock = board_of("a", "b", "c", "DEAD-beef")
    assert (board.percent, board.unseen, board.total) == (0, 4, 4)
    board.changed(job("a", 20))
    board.changed(job("b", 0, "SCHEDULED"))
    board.changed(job("DEAD-beef", 40))
    assert (board.unseen, board.queued, board.percent) == (1, 1, 15.0)
    clock.now += 5
    board.changed(job("b", 10))
    assert board.queued == 0
    board.changed(job("a", 100, "FINISHED"))
    board.ended_with(JobResult("a", job("a", 100, "FINISHED")))
    assert board.percent == (100 + 10 + 40) / 4
    board.ended_with(JobResult("c", None, NotFound(404, job_id="c")))
    assert board.percent == (100 + 10 + 100 + 40) / 4
    assert (board.ended, board.outcomes["succeeded"], board.outcomes["failed"]) == (2, 1, 1)
    assert [row.job_id for row in board.unsuccessful] == ["c"]
    assert board.changed(job("a", 50)) is None  # after its end: ignored
    assert board.changed(job("unknown", 50)) is None
    assert [what for _, _, what in board.recent][-2:] == [
        job("a", 100, "FINISHED"),
        JobResult("c", None, board.rows["c"].result.error),  # type: ignore[union-attr]
    ]


class Schedules:
    """Stands for the fan-out: the time left its schedules measured, by id."""

    polls = 7
    in_flight = 2

    def __init__(self, left: dict[str, float | None]) -> None:
        self.left = left
        self.reads = 0

    def time_left(self) -> dict[str, float | None]:
        self.reads += 1
        return dict(self.left)


def test_time_left_read_from_the_schedules() -> None:
    """A job's time left is read from the fan-out's schedules and counted down between
    reads; the longest is the wait's."""
    board, clock = board_of("a", "b", "c")
    schedules = Schedules({"a": 90.0, "b": 10.0, "c": None})
    board.fanout = schedules  # type: ignore[assignment]
    assert board.longest_time_left(clock.now) is None
    board.refresh_estimates(clock.now)
    clock.now += 0.5
    assert schedules.reads == 1
    assert board.time_left(board.rows["a"], clock.now) == pytest.approx(89.5)
    assert board.time_left(board.rows["c"], clock.now) is None
    assert board.longest_time_left(clock.now) == pytest.approx(89.5)
    clock.now += 20
    assert board.time_left(board.rows["b"], clock.now) == 0.0


async def test_the_fan_out_tells_each_jobs_time_left(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """`JobsWait.time_left()` gives each waiting job's time left at the pace its schedule
    measured: about the time a steady job has left, None before its progress moves."""
    job_id = service.add_job(duration=100)
    silent = service.add_job(duration=200, progress=None)
    # A seeded schedule: the same polls, hence the same estimates, on every run.
    policy = PollPolicy(clock=clock, sleep=clock.sleep, rng=random.Random(7).random)
    readings: list[tuple[int, dict[str, float | None]]] = []

    def read(job: Job) -> None:
        if job.id == job_id and not job.is_terminal:
            readings.append((job.progress, fanout.time_left()))

    fanout = wait_for_jobs(client, [job_id, silent], policy=policy, on_update=read)
    await fanout
    assert readings[0][1] == {job_id: None, silent: None}
    progress, left = next((p, left) for p, left in readings if p >= 40)
    estimate = left[job_id]
    assert estimate is not None
    # A value is first seen after it was reached: the measured pace is a little slow.
    assert 0.5 * (100 - progress) <= estimate <= 2 * (100 - progress)
    assert left[silent] is None


def test_json_lines() -> None:
    """A change line, an outcome line, a heartbeat only after the interval without a line,
    and the summary."""
    board, clock = board_of("a", "b")
    out = io.StringIO()
    view = JsonLines(board, Output(out), heartbeat=5.0)
    row = board.changed(job("a", 10))
    assert row is not None
    view.changed(row)
    clock.now += 4
    view.tick()  # 4 s since the last line: no heartbeat yet
    clock.now += 1
    view.tick()
    died = job("a", 40, "DIED")
    result = JobResult("a", died, JobFailedError(died))
    board.ended_with(result)
    view.ended(result)
    view.stop(Summary(1))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["change", "heartbeat", "outcome", "summary"]
    assert lines[0]["job"]["progress"] == 10
    assert (lines[1]["elapsed"], lines[1]["total"], lines[1]["percent"]) == (5.0, 2, 5.0)
    assert lines[2]["error"]["type"] == "JobFailedError"
    assert (lines[2]["ok"], lines[2]["outcome"]) == (False, "failed")
    assert (lines[3]["failed"], lines[3]["notEnded"], lines[3]["exitCode"]) == (1, 1, 1)


def rendered(view: LiveView, summary: Summary) -> str:
    view.start()
    view.tick()
    view.stop(summary)
    console = view._console
    assert isinstance(console.file, io.StringIO)
    return console.file.getvalue()


def console() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=120, height=40, color_system=None)


def test_live_view_of_a_few_jobs() -> None:
    """A row per job: status, percent, elapsed, time left; then the summary and failures."""
    board, clock = board_of("job-1", "job-2", "job-3")
    board.changed(job("job-1", 0))
    clock.now += 10
    board.changed(job("job-1", 25))
    died = job("job-2", 60, "DIED")
    board.changed(died)
    board.ended_with(JobResult("job-2", died, JobFailedError(died)))
    board.fanout = Schedules({"job-1": 30.0, "job-3": None})  # type: ignore[assignment]
    screen = rendered(LiveView(board, console(), title="Waiting"), Summary(1, interrupted=True))
    assert "job-1  RUNNING" in screen
    assert "25%  0:00:10  ~0:00:30" in screen
    assert "job-2  DIED" in screen
    assert "job-3  not seen yet" in screen
    assert "7 polls, 2 in flight" in screen
    assert "3 jobs in 0:00:10: 0 succeeded, 1 failed, 2 not ended; 7 polls (interrupted)" in (
        screen
    )
    assert "job-2  DIED at 60%" in screen


def test_live_view_of_many_jobs() -> None:
    """For many jobs: one bar, the totals, the latest changes; the summary lists ten of the
    jobs that did not succeed."""
    ids = [f"job-{n}" for n in range(100)]
    board, clock = board_of(*ids)
    for job_id in ids[:50]:
        board.changed(job(job_id, 50))
    for job_id in ids[:12]:
        board.ended_with(JobResult(job_id, None, NotFound(404, job_id=job_id)))
    clock.now += 65
    screen = rendered(LiveView(board, console(), title="Waiting"), Summary(1))
    assert "31%" in screen  # (12 x 100 + 38 x 50) / 100
    assert "0:01:05 elapsed" in screen
    assert "12 ended: 0 succeeded, 12 failed   88 waiting: 0 queued, 50 not seen yet" in screen
    assert "recent changes" in screen
    assert "job-11  not found (HTTP 404)" in screen
    assert "... and 2 more (--json lists every outcome)" in screen


def test_jobs_that_ended_unseen_are_not_waiting_to_be_seen() -> None:
    """A job that ended before any answer was read (a 404, a timeout) counts among the ended
    ones, under its outcome, not among the jobs not seen yet, which are waiting ones only."""
    ids = [f"job-{n}" for n in range(40)]
    board, _ = board_of(*ids)
    for job_id in ids[:20]:
        board.changed(job(job_id, 50))
    for job_id in ids[20:30]:
        board.ended_with(JobResult(job_id, None, NotFound(404, job_id=job_id)))
    board.ended_with(JobResult("job-30", None, WaitTimeout("job-30", timeout=1)))
    assert board.unseen == 9
    screen = rendered(LiveView(board, console(), title="Waiting"), Summary(1))
    assert "11 ended: 0 succeeded, 10 failed, 1 timed out   29 waiting: 0 queued, 9 not seen" in (
        screen
    )


#: Text a server or a user may send that rich would read as markup or an emoji code.
MARKUP_IDS = ["[/]", "[bold red]x", ":x:"]


@pytest.mark.parametrize("others", [0, 40], ids=["few", "many"])
def test_ids_and_server_text_are_shown_as_text(others: int) -> None:
    """Ids, statuses and the server's messages are shown as written in the rows, the recent
    changes and the summary: never read as markup (`[/]` would end the view with an error,
    `[bold red]x` would show as `x`) or as an emoji code; a control character is escaped."""
    board, _ = board_of(*MARKUP_IDS, *(f"job-{n}" for n in range(others)))
    board.changed(job("[/]", 10, "[/]RUNNING\x1b[2J"))
    board.changed(job(":x:", 20))
    error = BadRequest(400, message="[/] [bold]no\x1b[31m", job_id="[bold red]x")
    board.ended_with(JobResult("[bold red]x", None, error))
    screen = rendered(LiveView(board, console(), title="Waiting at [/]"), Summary(1))
    assert "Waiting at [/]" in screen
    assert "[/]RUNNING\\x1b[2J" in screen
    assert "[bold red]x  HTTP 400: [/] [bold]no\\x1b[31m" in screen  # the summary
    assert ":x:" in screen
    assert "\x1b[2J" not in screen  # what the server sent, as it was sent
    assert "\x1b[31m" not in screen
    if not others:
        assert "[bold red]x  BadRequest" in screen


async def test_a_job_failed_before_the_key_was_refused_makes_status_1(
    service: FakeJobsService, clock: VirtualClock
) -> None:
    """A failure (1) wins over the API refusing the key (4), as for the outcomes: a job that
    failed before a refusal ended the wait decides the status; the refusal is still said."""
    from jobpoll._exits import Failure
    from jobpoll._wait_command import wait_with_view

    failed = service.add_job(duration=0, final_status="FAILED")
    refused = service.add_job(duration=600)
    service.inject(Slow(0), job_id=refused)  # its first answer is a job, then 401s
    service.inject(HttpError(401), job_id=refused, times=None)
    policy = PollPolicy(clock=clock, sleep=clock.sleep, jitter=0)
    out = io.StringIO()
    # One connection: the polls go one at a time, the failed job's first.
    client = JobsClient(service.api_key, base_url=service.base_url, max_connections=1)
    board = Board([failed, refused], clock=policy.clock)
    with pytest.raises(Failure) as raised:
        await wait_with_view(client, board, policy, JsonLines(board, Output(out), heartbeat=5.0))
    assert "the API refused the key" in str(raised.value)
    summary = json.loads(out.getvalue().splitlines()[-1])
    assert summary["failed"] == 1
    assert raised.value.exit_code == summary["exitCode"] == 1


async def test_status_of_a_failed_job_and_a_refused_key_is_1(
    service: FakeJobsService, capsys: pytest.CaptureFixture[str]
) -> None:
    """`jobpoll status`: a job read as failed decides over a refusal of the key."""
    from jobpoll._exits import Failure
    from jobpoll._status import show_status

    failed = service.add_job(duration=0, final_status="FAILED")
    refused = service.add_job(duration=600)
    service.inject(HttpError(401), job_id=refused, times=None)
    client = JobsClient(service.api_key, base_url=service.base_url)
    with pytest.raises(Failure) as raised:
        await show_status(client, [failed, refused], Output(io.StringIO()), as_json=True)
    assert "the API refused the key" in str(raised.value)
    assert raised.value.exit_code == 1


def nan_for_none(left: dict[str, float | None]) -> dict[str, float]:
    return {job_id: math.nan if value is None else value for job_id, value in left.items()}


async def test_reading_the_times_left_makes_no_snapshot_per_job(
    service: FakeJobsService,
    client: JobsClient,
    clock: VirtualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The view reads every waiting job's time left once a second: that reads each row's
    schedule only, not its snapshot (a `Job` made per job, per second, three times the cost
    of the read), and gives what the job's whole schedule gives (in its checkpoint)."""
    from jobpoll import _rows
    from jobpoll._checkpoint import load_fanout
    from jobpoll._pace import time_left
    from jobpoll._saved import Timebase, restore_state

    ids = [service.add_job(duration=100 + i) for i in range(20)]
    policy = PollPolicy(clock=clock, sleep=clock.sleep, rng=random.Random(7).random)
    made = 0
    real_job = _rows.Job

    def counted(**fields: object) -> Job:
        nonlocal made
        made += 1
        return real_job(**fields)  # type: ignore[arg-type]

    checked = 0

    def read(job: Job) -> None:
        nonlocal made, checked
        if job.progress < 30:
            return
        saved = load_fanout(fanout.checkpoint())
        taken_at = saved.taken_at.timestamp()  # read back at once: no time passed since
        base = Timebase(attrs.evolve(policy, wall_clock=lambda: taken_at), saved.taken_at)
        whole = {}
        for state in saved.jobs:
            if state.job is None or not state.job.is_terminal:  # waiting, not ready
                whole[state.job_id] = time_left(restore_state(state, base).pace, base.now)
        made = 0
        with monkeypatch.context() as patch:
            patch.setattr(_rows, "Job", counted)
            left = fanout.time_left()
        assert made == 0
        # The checkpoint keeps times to the microsecond; a time left divides them by the
        # seconds a pace was measured over, and multiplies by the percent to go.
        expected = pytest.approx(nan_for_none(whole), rel=1e-5, abs=1e-5, nan_ok=True)
        assert nan_for_none(left) == expected
        checked += 1

    fanout = wait_for_jobs(client, ids, policy=policy, on_update=read)
    assert all(result.ok for result in await fanout)
    assert checked > 20

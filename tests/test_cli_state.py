"""`jobpoll wait --state FILE`: a wait stopped (Ctrl-C, SIGTERM, --timeout) goes on where it
stopped in the next run, each id reported by one run only, and the file is removed at the end;
a file it did not write is one line naming it, status 2. Also the atomic write, and the live
view on stderr while the JSON lines go to a file.

The interrupted runs are driven by events, never by the clock: the service's jobs run on a
`VirtualClock` the test moves on between runs, so a run can only end the jobs whose time has
come, and is always still waiting on the others when the test stops it after the Nth line.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from support import cli_environment, env_of, finished, read_terminal, run_jobpoll

from jobpoll._cli import run
from jobpoll._exits import EXIT_INTERRUPTED, EXIT_TERMINATED
from jobpoll._state_file import FORMAT, VERSION, write_atomically
from jobpoll.testing import FakeJobsService, VirtualClock

#: The schedule of the runs below: a job whose progress tells nothing is polled after at most
#: 0.5 s at first (then at 0.3 of its age: at most a few seconds here).
FAST = ("--max-interval", "0.5")
EXPECTED_STOP = {signal.SIGINT: EXIT_INTERRUPTED, signal.SIGTERM: EXIT_TERMINATED}


async def run_until(
    arguments: list[str], env: dict[str, str], stop_after: int | None, signum: int
) -> tuple[int, list[dict[str, object]], str]:
    """Run `jobpoll wait` with `arguments`; after `stop_after` outcome lines (if given), send
    it `signum`; its status, every JSON line it wrote, and its stderr."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "jobpoll", "wait", *arguments),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    lines: list[dict[str, object]] = []
    try:
        assert process.stdout is not None
        async with asyncio.timeout(120):
            outcomes = 0
            while stop_after is not None and outcomes < stop_after:
                line = await process.stdout.readline()
                assert line, "the run ended before it was stopped"
                lines.append(json.loads(line))
                outcomes += lines[-1]["event"] == "outcome"
            if stop_after is not None:
                process.send_signal(signum)
    except BaseException:
        process.kill()
        await process.wait()
        raise
    ran = await finished(process)
    return ran.returncode, lines + ran.lines(), ran.stderr


async def test_interrupted_three_times_reports_every_id_once(tmp_path: Path) -> None:
    """2,000 ids, stopped three times at random moments (after a random number of outcome
    lines; SIGINT or SIGTERM), then run to the end: every id is reported exactly once across
    the runs, each line says its run, and the state file is gone at the end.

    The jobs end at 0, 10, 20 or 30 s of the service's clock, moved on 10 s before each run:
    the first three runs always have jobs left to wait for when they are stopped."""
    rng = random.Random(22)
    clock = VirtualClock()
    state = tmp_path / "wait.json"
    ids_file = tmp_path / "ids.txt"
    async with FakeJobsService(clock=clock) as service:
        ends = {f"job-{n:04d}": 10.0 * rng.randrange(4) for n in range(2000)}
        for job_id, end in ends.items():
            service.add_job(job_id, duration=end, progress=None)
        ids_file.write_text("\n".join(ends) + "\n")
        reported: Counter[str] = Counter()
        runs: dict[str, int] = {}
        for number in range(1, 5):
            if number > 1:
                clock.advance(10)
            due = [job_id for job_id, end in ends.items() if end <= 10 * (number - 1)]
            endable = len(due) - sum(reported[job_id] for job_id in due)
            stop_after = rng.randint(1, endable) if number < 4 else None
            signum = rng.choice(list(EXPECTED_STOP))
            # The ids again in the first and third runs (the same ones: it goes on); none
            # in the others (the file's).
            ids = ["-f", str(ids_file)] if number in (1, 3) else []
            arguments = [*ids, "--state", str(state), "--quiet", *FAST]
            status, lines, stderr = await run_until(arguments, env_of(service), stop_after, signum)
            expected = EXPECTED_STOP[signum] if number < 4 else 0
            assert status == expected, stderr
            assert all(line["run"] == number for line in lines)
            for line in lines:
                if line["event"] == "outcome":
                    reported[str(line["jobId"])] += 1
                    runs[str(line["jobId"])] = number
            summary = lines[-1]
            assert (summary["event"], summary["exitCode"]) == ("summary", expected)
            assert state.exists() == (number < 4)
    assert set(reported) == set(ends)
    assert set(reported.values()) == {1}
    assert all(runs[job_id] * 10 > end for job_id, end in ends.items())  # none before its end
    assert sorted(os.listdir(tmp_path)) == ["ids.txt"]  # no file of a write left behind


async def test_a_timeout_keeps_the_jobs_for_the_next_run(tmp_path: Path) -> None:
    """With --state, --timeout bounds the run: the jobs not ended stay in the file (no
    "timed out" outcome), status 3; the next run reports them, and removes the file."""
    clock = VirtualClock()
    state = tmp_path / "wait.json"
    async with FakeJobsService(clock=clock) as service:
        done = service.add_job("done", duration=0)
        later = service.add_job("later", duration=10, progress=None)
        arguments = ["--state", str(state), "--quiet", "--timeout", "1", *FAST]
        first = await run_jobpoll("wait", done, later, *arguments, env=env_of(service))
        assert (first.returncode, first.stderr) == (3, "")
        assert [(line["event"], line.get("jobId")) for line in first.lines()] == [
            ("outcome", done),
            ("summary", None),
        ]
        assert first.lines()[-1]["notEnded"] == 1
        assert json.loads(state.read_text())["run"] == 1
        clock.advance(10)
        second = await run_jobpoll("wait", *arguments, env=env_of(service))
    assert (second.returncode, second.stderr) == (0, "")
    assert [(line["event"], line.get("jobId"), line["run"]) for line in second.lines()] == [
        ("outcome", later, 2),
        ("summary", None, 2),
    ]
    assert not state.exists()


async def test_the_status_counts_the_runs_before(tmp_path: Path) -> None:
    """A wait whose first run saw a job fail ends with status 1 in the run that ends it, all
    of whose own jobs succeeded: the summary says what the runs before reported."""
    clock = VirtualClock()
    state = tmp_path / "wait.json"
    async with FakeJobsService(clock=clock) as service:
        failed = service.add_job("failed", duration=0, final_status="FAILED")
        later = service.add_job("later", duration=10, progress=None)
        arguments = ["--state", str(state), "--quiet", "--timeout", "1", *FAST]
        first = await run_jobpoll("wait", failed, later, *arguments, env=env_of(service))
        assert first.returncode == 1  # a failure wins over the time running out
        clock.advance(10)
        second = await run_jobpoll("wait", *arguments, env=env_of(service))
    assert second.returncode == 1
    summary = second.lines()[-1]
    assert (summary["succeeded"], summary["failed"], summary["exitCode"]) == (1, 0, 1)
    assert summary["earlier"] == {"succeeded": 0, "failed": 1, "unreachable": 0, "timedOut": 0}
    assert not state.exists()


async def test_the_terminal_summary_says_what_the_runs_before_reported(tmp_path: Path) -> None:
    """At a terminal, the summary of a run of a wait kept in a state file says what the runs
    before it reported, which its status counts."""
    clock = VirtualClock()
    state = tmp_path / "wait.json"
    async with FakeJobsService(clock=clock) as service:
        failed = service.add_job("failed", duration=0, final_status="FAILED")
        later = service.add_job("later", duration=10, progress=None)
        arguments = ["--state", str(state), "--timeout", "1", *FAST]
        first = await run_jobpoll("wait", failed, later, *arguments, env=env_of(service))
        assert first.returncode == 1
        clock.advance(10)
        status, screen = await asyncio.to_thread(
            read_terminal, ["wait", *arguments], env_of(service)
        )
    assert status == 1
    assert "(run 2: 1 of 2 ended before)" in screen
    assert "before this run, 1 ended: 0 succeeded, 1 failed" in screen


async def test_outcomes_a_failed_output_lost_are_reported_again(tmp_path: Path) -> None:
    """Once writing the output fails (a full disk), the file keeps its last save: the job
    whose outcome could not be written is reported by the next run, not lost."""
    if not os.path.exists("/dev/full"):  # noqa: ASYNC240 - a stat, at once
        pytest.skip("no /dev/full here")
    clock = VirtualClock()
    state = tmp_path / "wait.json"
    async with FakeJobsService(clock=clock) as service:
        done = service.add_job("done", duration=0)
        later = service.add_job("later", duration=10, progress=None)
        arguments = ["--state", str(state), "--quiet", *FAST]
        with open("/dev/full", "w") as full:  # noqa: ASYNC230 - opening a device, at once
            process = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "jobpoll", "wait", done, later, *arguments),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=full,
                stderr=asyncio.subprocess.PIPE,
                env=env_of(service),
            )
            _, err = await process.communicate()
        assert process.returncode == 1
        assert b"cannot write to standard output" in err
        clock.advance(10)
        second = await run_jobpoll("wait", *arguments, env=env_of(service))
    assert second.returncode == 0, second.stderr
    assert {line["jobId"] for line in second.lines()[:-1]} == {done, later}
    assert not state.exists()


async def test_other_ids_than_the_files_are_refused(tmp_path: Path) -> None:
    """Ids that are not those the file's wait was started with: status 2, one line naming
    the file, nothing sent, the file as it was."""
    service = FakeJobsService()
    async with service:
        service.add_job("a", duration=600)
        state = tmp_path / "wait.json"
        first = await run_jobpoll(
            "wait", "a", "--state", str(state), "--timeout", "0.5", *FAST, env=env_of(service)
        )
        assert first.returncode == 3
        saved = state.read_bytes()
        requests = service.request_count()
        other = await run_jobpoll("wait", "a", "b", "--state", str(state), env=env_of(service))
        assert service.request_count() == requests
    assert (other.returncode, other.stdout) == (2, "")
    assert other.stderr == (
        f"jobpoll wait: --state {state}: it holds a wait on 1 other ids: give the same ids, or"
        " none, to go on with it (or remove it to start anew)\n"
    )
    assert state.read_bytes() == saved


def state_text(**fields: object) -> str:
    """A state file's text: a valid one of a wait on no jobs, `fields` replacing its own."""
    checkpoint = {
        "version": 3,
        "taken_at": "2026-01-01T00:00:00Z",
        "timeout": None,
        "deadline": None,
        "polls": 0,
        "rate": None,
        "jobs": [],
        "unstarted": ["a"],
    }
    data = {
        "format": FORMAT,
        "version": VERSION,
        "run": 1,
        "total": 1,
        "ids": "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb",  # "a"
        "outcomes": {"succeeded": 0, "failed": 0, "unreachable": 0, "timed out": 0},
        "checkpoint": checkpoint,
        **fields,
    }
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("{not json", "not a state file of jobpoll wait (not JSON)", id="not-json"),
        pytest.param(b"\xff\xfe", "not a state file of jobpoll wait (not JSON)", id="not-utf8"),
        pytest.param("[" * 100_000, "not a state file of jobpoll wait (not JSON)", id="nested"),
        pytest.param("[1, 2]", "not a state file of jobpoll wait (no format", id="a-list"),
        pytest.param('{"version": 3, "jobs": []}', "no format", id="a-bare-checkpoint"),
        pytest.param(state_text(version=2), "state file version 2 is not one", id="version"),
        pytest.param(
            state_text(version="1"), "state file version '1' is not one", id="version-str"
        ),
        pytest.param(state_text(run=0), "'run' must be >= 1: 0", id="run-0"),
        pytest.param(state_text(total="1"), "state.total", id="total-a-string"),
        pytest.param(state_text(ids="abc"), "expected a SHA-256", id="ids-not-a-digest"),
        pytest.param(state_text(checkpoint=[]), "state.checkpoint", id="checkpoint-a-list"),
        pytest.param(
            state_text(checkpoint={"version": 3}),
            "not a valid wait_for_jobs checkpoint",
            id="checkpoint-incomplete",
        ),
        pytest.param(
            state_text(total=2), "1 jobs pending and 0 reported, but 2 in all", id="counts"
        ),
        pytest.param(
            state_text(outcomes={"succeeded": -1}),
            "expected a count of 0 or more for each of succeeded, failed",
            id="outcomes",
        ),
    ],
)
@pytest.mark.usefixtures("in_process")
def test_a_corrupt_or_foreign_state_file_is_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | bytes, expected: str
) -> None:
    """A state file that is not JSON, not this command's, of another version, or altered
    into nonsense: status 2, one line naming the file and what is wrong, no traceback,
    nothing sent, and the file left as it was."""
    state = tmp_path / "wait.json"
    raw = text if isinstance(text, bytes) else text.encode()
    state.write_bytes(raw)
    assert run(["wait", "--state", str(state)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"jobpoll wait: --state {state}: "), err
    assert expected in err
    assert len(err.splitlines()) == 1
    assert state.read_bytes() == raw


@pytest.mark.usefixtures("in_process")
def test_a_checkpoint_taken_in_the_future_is_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state file whose checkpoint was taken years ahead of this machine's clock (which
    only resuming it can tell): status 2, one line naming the file, nothing polled."""
    state = tmp_path / "wait.json"
    checkpoint = json.loads(state_text())["checkpoint"]
    state.write_text(state_text(checkpoint={**checkpoint, "taken_at": "2999-01-01T00:00:00Z"}))
    assert run(["wait", "--state", str(state)]) == 2
    out, err = capsys.readouterr()
    assert err.startswith(f"jobpoll wait: --state {state}: "), err
    assert "ahead of this machine's clock" in err
    assert len(err.splitlines()) == 1
    summary = json.loads(out)
    assert (summary["exitCode"], summary["polls"], summary["notEnded"]) == (2, 0, 1)


@pytest.mark.usefixtures("in_process")
def test_a_state_file_that_cannot_be_read_is_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --state FILE that is a directory: status 2, one line naming it."""
    assert run(["wait", "a", "--state", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jobpoll wait: Invalid value for '--state': ")
    assert "is a directory" in err
    assert len(err.splitlines()) == 1


async def test_a_state_file_that_cannot_be_written_is_status_2(tmp_path: Path) -> None:
    """A --state FILE in a directory that does not exist: status 2 before any poll."""
    async with FakeJobsService() as service:
        service.add_job("a", duration=0)
        missing = tmp_path / "no" / "wait.json"
        ran = await run_jobpoll("wait", "a", "--state", str(missing), env=env_of(service))
        assert service.request_count() == 0
    assert ran.returncode == 2
    assert ran.stderr == (
        f"jobpoll wait: --state {missing}: cannot write it (No such file or directory)\n"
    )
    assert ran.lines()[-1]["exitCode"] == 2


def test_write_atomically_replaces_the_file_whole(tmp_path: Path) -> None:
    """A write replaces the file with the new bytes and leaves nothing else beside it."""
    path = tmp_path / "state.json"
    write_atomically(path, b"old")
    write_atomically(path, b"new")
    assert path.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["state.json"]


def test_a_failed_write_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails before the rename (a full disk: here the flush to the disk fails)
    leaves the old file as it was and no temporary file."""
    path = tmp_path / "state.json"
    write_atomically(path, b"old")

    def full(_descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, b"new")
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.json"]


async def test_live_view_on_stderr_when_the_output_goes_to_a_file(tmp_path: Path) -> None:
    """At a terminal with the JSON lines sent to a file, the live view (and its summary) goes
    to stderr; the file gets the JSON lines alone."""
    async with FakeJobsService() as service:
        ids = [service.add_job(duration=0) for _ in range(3)]
        output = tmp_path / "out.jsonl"
        status, screen = await asyncio.to_thread(
            read_terminal, ["wait", *ids, *FAST], env_of(service), output=output
        )
    assert status == 0
    assert "3 jobs in " in screen
    assert '"event"' not in screen
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert {line["jobId"] for line in lines if line["event"] == "outcome"} == set(ids)
    assert lines[-1]["event"] == "summary"


async def test_no_live_view_on_stderr_into_a_pipe() -> None:
    """With the JSON lines going into a pipe (whose reader may write to the terminal), stderr
    stays quiet even at a terminal."""
    async with FakeJobsService() as service:
        job_id = service.add_job(duration=0)
        status, screen = await asyncio.to_thread(
            read_terminal, ["wait", job_id, *FAST], env_of(service), output=subprocess.PIPE
        )
    assert (status, screen) == (0, "")


async def test_completion_script() -> None:
    """`_JOBPOLL_COMPLETE=bash_source jobpoll` prints the bash completion that
    docs/guides/cli.md shows."""
    ran = await run_jobpoll(env=cli_environment(_JOBPOLL_COMPLETE="bash_source"))
    assert ran.returncode == 0
    assert "complete " in ran.stdout
    assert "_JOBPOLL_COMPLETE=bash_complete" in ran.stdout


def test_state_file_benchmark_runs() -> None:
    """A tiny run of bench_state_file.py completes and prints what a save costs."""
    bench = Path(__file__).parent.parent / "benchmarks" / "bench_state_file.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--jobs", "40"],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "40 jobs pending: a save takes" in result.stdout

"""The `jobpoll` command, run as a child process against the fake service on loopback: each
exit status, the JSON lines, where ids come from, the errors, Ctrl-C, the live view in a
terminal, and the demo.

The service runs in the test's own event loop while the command runs; its jobs last well
under a second and the command polls every 0.1 s (`FAST`), so each run takes about a second.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import refusing_url
from support import Ran, cli_environment, env_of, read_terminal, run_jobpoll, until_idle

from jobpoll._cli import run
from jobpoll.testing import FakeJobsService, HttpError, VirtualClock

#: Poll every 0.1 s: the jobs below last well under a second.
FAST = ("--max-interval", "0.1")
#: A timeout for a wait whose other jobs end at their first poll: that poll must be answered
#: before it, which takes a few hundredths of a second, and some tenths on a loaded machine.
PATIENT = ("--timeout", "3")
OUTCOME_KEYS = {"event", "elapsed", "jobId", "job", "error", "ok", "outcome"}
CHANGE_KEYS = {"event", "elapsed", "jobId", "job"}
SUMMARY_KEYS = {
    "event",
    "elapsed",
    "total",
    "succeeded",
    "failed",
    "unreachable",
    "timedOut",
    "notEnded",
    "polls",
    "exitCode",
    "interrupted",
    "stoppedEarly",
    "error",
}
JOB_KEYS = {"id", "createdAt", "user", "progress", "status"}


@pytest.fixture
async def service() -> AsyncIterator[FakeJobsService]:
    """A fake on the real clock: the command runs in real time."""
    async with FakeJobsService() as fake:
        yield fake


def outcomes(ran: Ran) -> dict[str, dict[str, object]]:
    return {line["jobId"]: line for line in ran.lines() if line["event"] == "outcome"}


def assert_one_error_line(ran: Ran, *expected: str) -> None:
    """Exactly one line on stderr, no traceback, saying what is expected."""
    assert "Traceback" not in ran.stderr + ran.stdout
    assert len(ran.stderr.splitlines()) == 1, ran.stderr
    for text in expected:
        assert text in ran.stderr


async def test_wait_json_lines() -> None:
    """Off a terminal, every change and outcome is a JSON line of a fixed shape, the summary
    last; all succeeded is status 0, with nothing on stderr.

    The service runs on a clock of the test's own: each job is seen RUNNING however slowly
    the command starts, and ends when the test moves the clock on, not when a real second
    has passed."""
    clock = VirtualClock()
    async with FakeJobsService(clock=clock) as service:
        ids = [service.add_job(duration=d) for d in (10, 20, 30)]
        ids.append(service.add_job("archived", duration=15, final_status="ARCHIVED"))
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "jobpoll", "wait", *ids, *FAST),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env_of(service),
        )
        try:
            assert process.stdout is not None
            async with asyncio.timeout(60):
                lines = [json.loads(await process.stdout.readline()) for _ in ids]  # RUNNING
                clock.advance(30)  # every job ends
                out, err = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert (process.returncode, err) == (0, b"")
    assert [(line["event"], line["job"]["status"]) for line in lines] == [("change", "RUNNING")] * 4
    lines += [json.loads(line) for line in out.decode().splitlines()]
    for line in lines[:-1]:
        assert set(line) == (CHANGE_KEYS if line["event"] == "change" else OUTCOME_KEYS), line
        assert set(line["job"]) == JOB_KEYS
    changes = [line for line in lines if line["event"] == "change"]
    assert {line["job"]["status"] for line in changes} == {"RUNNING", "FINISHED", "ARCHIVED"}
    ended = {line["jobId"]: line for line in lines if line["event"] == "outcome"}
    assert set(ended) == set(ids)
    assert all(line["ok"] and line["error"] is None for line in ended.values())
    summary = lines[-1]
    assert set(summary) == SUMMARY_KEYS
    assert summary["event"] == "summary"
    assert (summary["total"], summary["succeeded"], summary["exitCode"]) == (4, 4, 0)


async def test_failed_job_is_status_1(service: FakeJobsService) -> None:
    """A job that ends FAILED (or is not found) makes the status 1; its outcome says how."""
    done = service.add_job(duration=0.1)
    failed = service.add_job(duration=0.2, final_status="FAILED", progress=lambda x: 40 * x)
    ran = await run_jobpoll("wait", done, failed, "missing", "--quiet", *FAST, env=env_of(service))
    assert ran.returncode == 1
    assert [line["event"] for line in ran.lines()] == ["outcome"] * 3 + ["summary"]
    ended = outcomes(ran)
    assert ended[failed]["outcome"] == "failed"
    assert ended[failed]["error"]["type"] == "JobFailedError"  # type: ignore[index]
    assert ended[failed]["job"]["status"] == "FAILED"  # type: ignore[index]
    assert ended["missing"]["error"]["type"] == "NotFound"  # type: ignore[index]
    assert ended[done]["ok"] is True


async def test_fail_fast_stops_at_the_first_failure(service: FakeJobsService) -> None:
    """With --fail-fast the wait stops at the first job that fails; the others are left."""
    failed = service.add_job(duration=0.2, final_status="DIED")
    slow = service.add_job(duration=600)
    ran = await run_jobpoll("wait", slow, failed, "--fail-fast", *FAST, env=env_of(service))
    assert ran.returncode == 1
    assert set(outcomes(ran)) == {failed}
    summary = ran.lines()[-1]
    assert (summary["stoppedEarly"], summary["notEnded"], summary["exitCode"]) == (True, 1, 1)
    await until_idle(service)


async def test_timeout_is_status_3(service: FakeJobsService) -> None:
    """Jobs not ended by --timeout are outcomes of their own, and the status is 3."""
    done = service.add_job(duration=0)  # seen done at the first poll, however slow the machine
    slow = service.add_job(duration=600)
    ran = await run_jobpoll("wait", done, slow, *PATIENT, *FAST, env=env_of(service))
    assert ran.returncode == 3
    ended = outcomes(ran)
    assert ended[slow]["outcome"] == "timed out"
    assert ended[slow]["error"]["type"] == "WaitTimeout"  # type: ignore[index]
    assert ran.lines()[-1]["timedOut"] == 1


async def test_failure_wins_over_timeout(service: FakeJobsService) -> None:
    """A job that failed says more than one that did not end in time: the status is 1."""
    failed = service.add_job(duration=0, final_status="FAILED")
    slow = service.add_job(duration=600)
    ran = await run_jobpoll("wait", failed, slow, *PATIENT, *FAST, env=env_of(service))
    assert ran.returncode == 1


async def test_refused_key_is_status_4(service: FakeJobsService) -> None:
    """A key the API refuses ends the wait at once with status 4, one line on stderr, and the
    key nowhere in the output."""
    wrong = "sk-wrong-key-8d1f2a"
    ids = [service.add_job(duration=0.1) for _ in range(150)]  # more than one window (100)
    ran = await run_jobpoll("wait", *ids, env=env_of(service, CDQ_API_KEY=wrong))
    assert ran.returncode == 4
    assert_one_error_line(ran, "jobpoll wait: the API refused the key: HTTP 401")
    assert wrong not in ran.stdout + ran.stderr
    assert service.request_count() < 150  # stopped at the first refusal, not 150 times
    summary = ran.lines()[-1]
    assert (summary["exitCode"], summary["notEnded"]) == (4, 150)


async def test_unreachable_is_status_4() -> None:
    """A base URL where nothing answers is given up after --connect-grace, status 4."""
    with refusing_url() as url:
        env = cli_environment(CDQ_API_KEY="k", CDQ_BASE_URL=url)
        ran = await run_jobpoll("wait", "a", "--connect-grace", "0.3", *FAST, env=env)
    assert ran.returncode == 4
    assert_one_error_line(ran, "jobpoll wait: cannot reach the API:", "nothing has answered")


async def test_verbose_logs_the_failures_ridden_out() -> None:
    """With -v, the failures ridden out are log lines on stderr, before the error line."""
    with refusing_url() as url:
        env = cli_environment(CDQ_API_KEY="k", CDQ_BASE_URL=url)
        ran = await run_jobpoll("wait", "a", "--connect-grace", "0.3", "-v", *FAST, env=env)
    assert ran.returncode == 4
    *logged, last = ran.stderr.splitlines()
    assert any(line.startswith("jobpoll: INFO: ") for line in logged), ran.stderr
    assert last.startswith("jobpoll wait: cannot reach the API:")


async def test_https_on_a_plain_port_is_status_4(service: FakeJobsService) -> None:
    """An https URL pointed at a plain-http port fails at the first poll, status 4."""
    url = service.base_url.replace("http://", "https://")
    ran = await run_jobpoll("wait", "a", "--base-url", url, env=env_of(service))
    assert ran.returncode == 4
    assert_one_error_line(ran, "TLS failed")


@pytest.mark.parametrize(
    ("arguments", "variables", "expected"),
    [
        pytest.param(
            ["wait", "a"],
            {"CDQ_API_KEY": None},
            "jobpoll wait: no API key: set CDQ_API_KEY, or pass --api-key-file FILE",
            id="no-key",
        ),
        pytest.param(
            ["wait", "a", "--base-url", "http://example.com/api"],
            {},
            "jobpoll wait: --base-url: refusing plain http to example.com",
            id="plain-http-url",
        ),
        pytest.param(
            ["status", "a"],
            {"CDQ_BASE_URL": "not a url"},
            "jobpoll status: CDQ_BASE_URL: base_url must be an absolute https URL",
            id="bad-url-from-environment",
        ),
        pytest.param(
            ["wait", "good", "bad\tid"],
            {},
            "jobpoll wait: argument 2: the job id 'bad\\tid' holds control characters",
            id="bad-id",
        ),
    ],
)
async def test_usage_and_configuration_errors_are_status_2(
    service: FakeJobsService,
    arguments: list[str],
    variables: dict[str, str | None],
    expected: str,
) -> None:
    """Each usage or configuration error is status 2, one line on stderr, before any poll."""
    env = env_of(service)
    for name, value in variables.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    ran = await run_jobpoll(*arguments, env=env)
    assert ran.returncode == 2
    assert_one_error_line(ran, expected)
    assert ran.stdout == ""
    assert service.request_count() == 0


#: More usage errors, run in this process (they end before any event loop or request).
IN_PROCESS_USAGE_ERRORS = [
    pytest.param(["wait", "x" * 257], {}, "is 257 characters long; at most 256", id="long-id"),
    pytest.param(["wait"], {}, "jobpoll wait: no job ids given", id="no-ids"),
    pytest.param(
        ["wait", "a", "--timeout", "-1"],
        {},
        "jobpoll wait: Invalid value for '--timeout': -1.0 is not a positive number",
        id="bad-timeout",
    ),
    pytest.param(
        ["wait", "a", "--no-such-option"],
        {},
        "jobpoll wait: No such option",  # then click's own words, which vary by version
        id="unknown-option",
    ),
    pytest.param(
        ["wait", "a", "--api-key-file", "/no/such/file"],
        {},
        "jobpoll wait: --api-key-file /no/such/file: cannot read it",
        id="no-key-file",
    ),
    pytest.param(
        ["wait", "a"],
        {"CDQ_API_KEY": "two words\n"},
        "jobpoll wait: CDQ_API_KEY: the API key holds characters",
        id="key-not-a-header",
    ),
]


@pytest.mark.parametrize(("arguments", "variables", "expected"), IN_PROCESS_USAGE_ERRORS)
@pytest.mark.usefixtures("in_process")
def test_more_usage_errors_are_status_2(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    arguments: list[str],
    variables: dict[str, str],
    expected: str,
) -> None:
    """Bad options, ids and key files: status 2 and one line, as in a child process."""
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert run(arguments) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert expected in err


@pytest.mark.parametrize(
    "separator",
    ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"],
    ids=["vt", "ff", "fs", "gs", "rs", "nel", "line-separator", "paragraph-separator"],
)
@pytest.mark.usefixtures("in_process")
def test_a_line_of_ids_ends_at_a_line_feed_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], separator: str
) -> None:
    """A line of a file of ids ends at a line feed (CRLF too), not at the other characters
    `str.splitlines` breaks at: a line holding one is one id, refused for its control
    character (status 2, nothing sent), not two ids waited for."""
    path = tmp_path / "ids.txt"
    path.write_text(f"first\r\nsecond{separator}third\r\n", encoding="utf-8")
    assert run(["wait", "-f", str(path), "--connect-grace", "0.1"]) == 2
    out, err = capsys.readouterr()
    wrong = ascii(f"second{separator}third")
    assert (out, err) == (
        "",
        f"jobpoll wait: line 2 of {path}: the job id {wrong} holds control characters or"
        " leading/trailing white space\n",
    )


async def test_ids_from_files_and_stdin(service: FakeJobsService, tmp_path: Path) -> None:
    """Ids come from arguments, files (blank lines and # comments skipped, a BOM ignored) and
    stdin, duplicates once; the key from --api-key-file."""
    ids = [service.add_job(duration=0.1) for _ in range(5)]
    listed = tmp_path / "ids.txt"
    listed.write_text("\ufeff# the batch of today\n" + f"{ids[1]}\n\n  {ids[2]}  \n{ids[0]}\n")
    key_file = tmp_path / "key"
    key_file.write_text(service.api_key + "\n")
    env = cli_environment(CDQ_BASE_URL=service.base_url)
    ran = await run_jobpoll(
        "wait",
        ids[0],
        "-",
        "-f",
        str(listed),
        "--api-key-file",
        str(key_file),
        *FAST,
        env=env,
        stdin=f"{ids[3]}\n{ids[4]}\n",
    )
    assert ran.returncode == 0, ran.stderr
    assert set(outcomes(ran)) == set(ids)
    assert ran.lines()[-1]["total"] == 5


async def test_odd_ids_sent_and_reported_exactly(service: FakeJobsService) -> None:
    """Ids with spaces, query characters, non-ASCII letters, a leading dash (after --) or at
    the longest length are sent as they are and reported under their own name."""
    odd = ["a b", "x&jobId=y", "100%", "#frag", "../up?", "Ünïcødé-ジョブ", "-dash", "z" * 256]
    for job_id in odd:
        service.add_job(job_id, duration=0.1)
    ran = await run_jobpoll("wait", *FAST, "--", *odd, env=env_of(service))
    assert ran.returncode == 0, ran.stderr
    assert set(outcomes(ran)) == set(odd)
    assert {job_id: service.request_count(job_id) > 0 for job_id in odd} == dict.fromkeys(odd, True)


async def test_status_table_and_json(service: FakeJobsService) -> None:
    """`status` polls each job once: a table, or JSON lines; a failed or missing job is
    status 1, all readable and none failed is 0."""
    running = service.add_job(duration=600)
    failed = service.add_job(duration=0, final_status="FAILED")
    ran = await run_jobpoll("status", running, "--json", env=env_of(service))
    assert ran.returncode == 0
    (line,) = ran.lines()
    assert (line["event"], line["jobId"], line["job"]["status"]) == ("status", running, "RUNNING")
    ran = await run_jobpoll("status", running, failed, "missing", env=env_of(service))
    assert ran.returncode == 1
    table = ran.stdout.splitlines()
    assert table[0].split() == ["job", "status", "progress", "created", "user"]
    assert [row.split()[:2] for row in table[1:]] == [
        [running, "RUNNING"],
        [failed, "FAILED"],
        ["missing", "not"],
    ]
    assert service.request_count() == 4


async def test_status_shows_ids_and_server_text_as_text(service: FakeJobsService) -> None:
    """`status` shows ids and the server's `user` as written, piped or at a terminal: `[/]`
    does not end it with a markup error, `[bold red]x` is not shown as `x`, an emoji code
    stays as written, and the server's control characters are escaped."""
    service.add_job("[bold red]x", duration=600, user="[/]")
    service.add_job(":x:", duration=600, user="\x1b[2Jgone")
    ran = await run_jobpoll("status", "[bold red]x", ":x:", env=env_of(service))
    status, screen = await asyncio.to_thread(
        read_terminal, ["status", "[bold red]x", ":x:"], env_of(service)
    )
    assert (ran.returncode, ran.stderr, status) == (0, "", 0)
    for shown in (ran.stdout, screen):
        rows = [line.split() for line in shown.splitlines()[1:]]
        assert [(row[0], row[1], row[-1]) for row in rows] == [
            ("[bold", "red]x", "[/]"),
            (":x:", "RUNNING", "\\x1b[2Jgone"),
        ]


async def test_status_with_a_refused_key_is_status_4(service: FakeJobsService) -> None:
    """`status` with a key the API refuses: status 4, one line."""
    ran = await run_jobpoll("status", "a", env=env_of(service, CDQ_API_KEY="wrong"))
    assert ran.returncode == 4
    assert_one_error_line(ran, "jobpoll status: the API refused the key")


@pytest.mark.parametrize(
    ("variables", "refusal", "error_type"),
    [
        pytest.param({"CDQ_API_KEY": "wrong"}, None, "Unauthorized", id="401"),
        pytest.param({}, HttpError(403), "Forbidden", id="403"),
    ],
)
async def test_status_json_with_a_refused_key_has_a_line_per_id(
    service: FakeJobsService,
    variables: dict[str, str],
    refusal: HttpError | None,
    error_type: str,
) -> None:
    """`status --json` with a key the API refuses writes each id's line carrying the error,
    as for any job it could not read, and exits with status 4 and one line on stderr."""
    if refusal is not None:
        service.inject(refusal, times=None)
    ran = await run_jobpoll("status", "a", "b", "--json", env=env_of(service, **variables))
    assert ran.returncode == 4
    assert_one_error_line(ran, "jobpoll status: the API refused the key")
    lines = ran.lines()
    assert [(line["event"], line["jobId"], line["job"]) for line in lines] == [
        ("status", "a", None),
        ("status", "b", None),
    ]
    assert {line["error"]["type"] for line in lines} == {error_type}
    assert "wrong" not in ran.stdout


async def test_heartbeat_while_nothing_changes(service: FakeJobsService) -> None:
    """A job that does not change gets heartbeat lines at the --heartbeat interval (read until
    the first after its one change, then interrupted); --quiet has none.

    A loaded machine may take longer than the interval to answer the first poll: heartbeats
    before the change are right then, and allowed."""
    service.add_job("still", duration=600, progress=None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "jobpoll", "wait", "still", "--heartbeat", "0.2", *FAST),
        stdout=asyncio.subprocess.PIPE,
        env=env_of(service),
    )
    events: list[dict[str, Any]] = []
    kinds: list[str] = []
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            while "change" not in kinds or kinds[-1] != "heartbeat":
                events.append(json.loads(await process.stdout.readline()))
                kinds.append(events[-1]["event"])
            process.send_signal(signal.SIGINT)
            await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    change = kinds.index("change")
    assert kinds == ["heartbeat"] * change + ["change", "heartbeat"]
    assert set(events[-1]) == {"event", "elapsed", "total", "ended", "percent", "polls", "inFlight"}
    assert events[-1]["elapsed"] >= 0.2
    silence = events[-1]["elapsed"] - events[change]["elapsed"]
    assert silence >= 0.2 - 0.001  # each elapsed is rounded to the millisecond
    quiet = await run_jobpoll(
        "wait", "still", "--timeout", "0.3", "--heartbeat", "0.05", "-q", *FAST, env=env_of(service)
    )
    assert [line["event"] for line in quiet.lines()] == ["outcome", "summary"]


async def test_a_503_burst_is_ridden_out(service: FakeJobsService) -> None:
    """Throttling answers are ridden out: the jobs still succeed."""
    ids = [service.add_job(duration=0.2) for _ in range(3)]
    service.inject(HttpError(503, retry_after=0.1), times=4)
    ran = await run_jobpoll("wait", *ids, *FAST, env=env_of(service))
    assert ran.returncode == 0, ran.stderr
    assert ran.lines()[-1]["succeeded"] == 3


async def test_max_rate_spaces_every_request(service: FakeJobsService) -> None:
    """`--max-rate 20` sends at most 20 requests a second: 8 requests span at least 7 x 50 ms
    (less 50 ms for the network's jitter; a slow machine only spaces them more)."""
    ids = [service.add_job(duration=0) for _ in range(8)]
    ran = await run_jobpoll("status", *ids, "--json", "--max-rate", "20", env=env_of(service))
    assert ran.returncode == 0, ran.stderr
    times = sorted(request.at for request in service.recent_requests)
    assert len(times) == 8
    assert times[-1] - times[0] >= 7 * 0.05 - 0.05


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
async def test_interrupted_mid_wait(service: FakeJobsService, signum: int) -> None:
    """Ctrl-C (SIGINT) mid-wait stops cleanly: the summary says so, one line on stderr, status
    130 (143 for SIGTERM), no traceback, and no request left at the service."""
    ids = [service.add_job(duration=600) for _ in range(3)]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobpoll",
        "wait",
        *ids,
        *FAST,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env_of(service),
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            first = json.loads(await process.stdout.readline())  # it is waiting now
            assert first["event"] == "change"
            process.send_signal(signum)
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    expected = 130 if signum == signal.SIGINT else 143
    word = "interrupted" if signum == signal.SIGINT else "terminated"
    assert process.returncode == expected
    assert err.decode() == f"jobpoll wait: {word}\n"
    summary = json.loads(out.decode().splitlines()[-1])
    assert (summary["event"], summary["interrupted"], summary["exitCode"]) == (
        "summary",
        True,
        expected,
    )
    assert summary["notEnded"] == 3
    await until_idle(service)


@pytest.mark.parametrize(("jobs", "many"), [(3, False), (40, True)], ids=["few", "many"])
async def test_live_view_at_a_terminal(service: FakeJobsService, jobs: int, many: bool) -> None:
    """At a terminal: a bar per job for a few jobs, one bar and the latest changes for many;
    the summary at the end, and no JSON."""
    ids = [service.add_job(duration=0.3) for _ in range(jobs)]
    failed = service.add_job(duration=0.2, final_status="FAILED", progress=lambda x: 40 * x)
    status, screen = await asyncio.to_thread(
        read_terminal, ["wait", *ids, failed, *FAST], env_of(service)
    )
    assert status == 1
    assert "━" in screen  # the bars
    assert '"event"' not in screen
    assert re.search(rf"{jobs + 1} jobs in \d+:\d\d:\d\d: ", screen)
    assert f"{jobs} succeeded, 1 failed" in screen
    assert f"{failed}  FAILED at 40%" in screen
    if many:
        assert "recent changes" in screen
    else:
        assert all(job_id in screen for job_id in ids)
        assert "elapsed" in screen
        assert "left" in screen


@pytest.mark.parametrize(
    "size", [{"COLUMNS": "0"}, {"COLUMNS": "0", "LINES": "0"}, {"COLUMNS": "3"}], ids=str
)
async def test_a_terminal_said_to_have_no_width(
    service: FakeJobsService, size: dict[str, str]
) -> None:
    """At a terminal whose COLUMNS (or LINES) says 0 or next to nothing, `status` and `wait`
    still show everything, at the terminal's own width: rich would draw nothing at all."""
    job_id = service.add_job(duration=0)
    env = env_of(service)
    status, screen = await asyncio.to_thread(read_terminal, ["status", job_id], env, **size)
    assert status == 0
    assert screen.splitlines()[1].split()[:2] == [job_id, "FINISHED"]
    status, screen = await asyncio.to_thread(read_terminal, ["wait", job_id, *FAST], env, **size)
    assert status == 0
    assert re.search(r"1 job in \d+:\d\d:\d\d: 1 succeeded; \d+ polls", screen)


async def test_live_view_shows_ids_and_server_text_as_text(service: FakeJobsService) -> None:
    """At a terminal, ids and the server's messages are shown as written, in the rows and in
    the summary: never read as markup or emoji codes."""
    service.add_job("[bold red]x", duration=0)
    service.add_job(":x:", duration=0)
    service.inject(HttpError(400, message="[/] [bold]refused"), job_id="[/]", times=None)
    status, screen = await asyncio.to_thread(
        read_terminal, ["wait", "[bold red]x", ":x:", "[/]", *FAST], env_of(service)
    )
    assert status == 1
    assert re.search(r"\[bold red\]x +FINISHED", screen)
    assert re.search(r":x: +FINISHED", screen)
    assert "[/]  HTTP 400: [/] [bold]refused" in screen


async def test_demo_runs_as_designed() -> None:
    """`jobpoll demo` waits on its dozen jobs (two of them fail, by design) through a 503
    burst, and says it ran as designed: status 0."""
    ran = await run_jobpoll("demo", "--speed", "8", env=cli_environment())
    assert ran.returncode == 0, ran.stderr
    lines = ran.lines()
    assert lines[-1]["event"] == "demo"
    assert lines[-1]["asDesigned"] is True
    assert lines[-1]["throttled"] > 0
    ended = outcomes(ran)
    assert len(ended) == 12
    assert sorted(job_id for job_id, line in ended.items() if not line["ok"]) == [
        "demo-09-fails",
        "demo-10-dies",
    ]
    assert lines[-2]["event"] == "summary"


async def test_console_script_and_help() -> None:
    """The `jobpoll` script beside this Python runs; --help lists the exit statuses."""
    script = Path(sys.executable).parent / "jobpoll"
    process = await asyncio.create_subprocess_exec(
        str(script), "wait", "--help", stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    assert process.returncode == 0
    text = out.decode()
    for status in ("0 ", "1 ", "2 ", "3 ", "4 ", "130 ", "141 "):
        assert f"  {status}" in text


async def test_status_help_lists_the_statuses_status_gives() -> None:
    """`jobpoll status --help` lists the statuses `status` can give: not 3 (it has no
    --timeout)."""
    ran = await run_jobpoll("status", "--help")
    assert ran.returncode == 0
    listed = re.findall(r"^ +(\d+) ", ran.stdout.split("Exit status:")[1], flags=re.MULTILINE)
    assert listed == ["0", "1", "2", "4", "130", "141"]
    assert "timeout" not in ran.stdout


async def test_without_the_cli_extra() -> None:
    """Without click (the cli extra), the command says what to install, in one line."""
    code = "import sys; sys.modules['click'] = None; from jobpoll.__main__ import main; main()"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, "--help", stderr=asyncio.subprocess.PIPE
    )
    _, err = await process.communicate()
    assert process.returncode == 2
    assert err.decode() == (
        "jobpoll: the command line needs the cli extra (click is missing):"
        " pip install 'jobpoll[cli]'\n"
    )


async def test_library_import_needs_neither_click_nor_rich() -> None:
    """`import jobpoll` (and its testing module) loads neither click nor rich."""
    code = (
        "import sys, jobpoll, jobpoll.testing; "
        "assert not {'click', 'rich'} & set(sys.modules), sorted(sys.modules)"
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    assert await process.wait() == 0


def test_a_large_ids_file_costs_about_its_ids(tmp_path: Path) -> None:
    """Reading 50,000 ids (CRLF lines) holds the ids and the file's text at the peak, not a
    description of each id's place besides: under 260 bytes per id of a 36-character id
    (about 190; 360 when each id's place was kept until all were checked). Counted, not
    timed."""
    import tracemalloc
    import uuid

    from jobpoll._options import read_ids

    ids = [str(uuid.UUID(int=n)) for n in range(50_000)]
    path = tmp_path / "ids.txt"
    path.write_bytes("".join(f"{job_id}\r\n" for job_id in ids).encode())
    tracemalloc.start()
    try:
        read = read_ids([], [str(path)])
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read == ids
    assert peak / len(ids) < 260

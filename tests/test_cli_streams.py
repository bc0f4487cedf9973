"""The `jobpoll` command whatever its streams: closed ones, an encoding without the ids'
characters, a reader that goes away (`| head -1`), a full disk; and Ctrl-C while it starts.
Never a traceback; the status is the one the summary says, or the shell's status for SIGPIPE
(141) once nobody reads, or 130 for Ctrl-C.

Each runs the real command as a child process, through `sh` where the shell's own
redirections (`>&-`, `<&-`) say it best.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from support import Ran, cli_environment, env_of, finished, read_terminal, run_jobpoll

from jobpoll._exits import EXIT_CLOSED_OUTPUT
from jobpoll._output import Output
from jobpoll.testing import FakeJobsService, VirtualClock

#: Poll every 0.1 s, and write a heartbeat every 0.05 s: a wait that keeps writing.
FAST = ("--max-interval", "0.1")
CHATTY = (*FAST, "--heartbeat", "0.05")


@pytest.fixture
async def service() -> AsyncIterator[FakeJobsService]:
    """A fake on the real clock: the command runs in real time."""
    async with FakeJobsService() as fake:
        yield fake


async def run_in_shell(script: str, *arguments: str, env: dict[str, str]) -> Ran:
    """Run `sh -c script` with `jobpoll` as `$JOBPOLL` and `arguments` as `$@`, stdout and
    stderr piped (unless the script redirects them)."""
    process = await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        script,
        "sh",
        *arguments,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**env, "JOBPOLL": f"{sys.executable} -m jobpoll"},
    )
    return await finished(process)


@pytest.mark.parametrize(
    ("arguments", "status"),
    [
        pytest.param(["wait", "done"], 0, id="wait"),
        pytest.param(["wait", "done", "--quiet"], 0, id="wait-quiet"),
        pytest.param(["status", "--json", "done"], 0, id="status-json"),
        pytest.param(["status", "failed"], 1, id="status-table"),
    ],
)
async def test_a_closed_standard_output(
    service: FakeJobsService, arguments: list[str], status: int
) -> None:
    """With standard output closed (`>&-`) the command runs as if its output went to
    /dev/null: its status tells how the jobs ended, and nothing is said on stderr."""
    service.add_job("done", duration=0)
    service.add_job("failed", duration=0, final_status="FAILED")
    ran = await run_in_shell('exec $JOBPOLL "$@" >&-', *arguments, env=env_of(service))
    assert (ran.returncode, ran.stderr) == (status, "")
    assert service.request_count() >= 1


async def test_a_closed_standard_error(service: FakeJobsService) -> None:
    """With stderr closed (`2>&-`) an error still gives its status, without a traceback."""
    env = env_of(service)
    env.pop("CDQ_API_KEY")
    ran = await run_in_shell('exec $JOBPOLL "$@" 2>&-', "wait", "a", env=env)
    assert (ran.returncode, ran.stdout) == (2, "")


async def test_ids_from_a_closed_standard_input(service: FakeJobsService) -> None:
    """`jobpoll wait -` with stdin closed (`<&-`) says so in one line: status 2."""
    ran = await run_in_shell('exec $JOBPOLL "$@" <&-', "wait", "-", env=env_of(service))
    assert (ran.returncode, ran.stdout) == (2, "")
    assert ran.stderr == "jobpoll wait: cannot read ids from standard input (it is closed)\n"
    assert service.request_count() == 0


@pytest.mark.parametrize("failed", [False, True], ids=["succeeded", "failed"])
async def test_an_encoding_without_the_ids_characters(
    service: FakeJobsService, failed: bool
) -> None:
    """With `PYTHONIOENCODING=ascii`, a non-ASCII id is written as JSON's escape (`\\u00fc`):
    every line is JSON, nothing on stderr, and the summary's exitCode is the status."""
    job_id = "Ünïcødé-ジョブ"
    service.add_job(job_id, duration=0, final_status="FAILED" if failed else "FINISHED")
    ran = await run_jobpoll("wait", job_id, *FAST, env=env_of(service, PYTHONIOENCODING="ascii"))
    assert ran.stdout.isascii()
    assert "\\u00dc" in ran.stdout
    lines = ran.lines()
    assert {line.get("jobId") for line in lines[:-1]} == {job_id}
    assert (ran.returncode, ran.stderr) == (int(failed), "")
    assert lines[-1]["exitCode"] == ran.returncode


async def test_an_encoding_without_the_ids_characters_for_people(
    service: FakeJobsService,
) -> None:
    """With `PYTHONIOENCODING=ascii`, a non-ASCII id is shown as its escapes in `status`'s
    table and at a terminal: the status is the jobs', nothing on stderr."""
    service.add_job("Ünï", duration=0)
    env = env_of(service, PYTHONIOENCODING="ascii")
    ran = await run_jobpoll("status", "Ünï", env=env)
    assert (ran.returncode, ran.stderr) == (0, "")
    assert ran.stdout.splitlines()[1].split()[:2] == ["\\xdcn\\xef", "FINISHED"]
    status, screen = await asyncio.to_thread(read_terminal, ["wait", "Ünï", *FAST], env)
    assert status == 0
    assert "\\xdcn\\xef" in screen
    assert "1 job in " in screen


def read_a_line_and_leave(
    arguments: list[str], env: dict[str, str], *, then_stop: bool = False
) -> tuple[int, bytes, bytes]:
    """Run `python arguments...`, read the first line of its output, then close the pipe
    (the reader goes away), and SIGTERM it with `then_stop`; its status, that line, and
    what it said on stderr."""
    process = subprocess.Popen(
        [sys.executable, *arguments],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        process.stdout.close()
        if then_stop:
            process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    return process.returncode, line, err


async def test_a_reader_that_goes_away(service: FakeJobsService) -> None:
    """Once the reader of the JSON lines has gone (it read one line and closed the pipe),
    the wait stops at its next line, quietly, with the shell's status for SIGPIPE (141)."""
    service.add_job("long", duration=600)
    arguments = ["-m", "jobpoll", "wait", "long", *CHATTY]
    status, line, err = await asyncio.to_thread(read_a_line_and_leave, arguments, env_of(service))
    assert json.loads(line)["event"] == "change"
    assert (status, err) == (EXIT_CLOSED_OUTPUT, b"")


async def test_piped_into_head(service: FakeJobsService) -> None:
    """`jobpoll wait ... | head -1`: the wait stops once `head` has gone, quietly, and exits
    141, as the shell reports a command SIGPIPE ended (the status is written to stderr by a
    wrapper: sh has no PIPESTATUS)."""
    service.add_job("long", duration=600)
    ran = await run_in_shell(
        '{ $JOBPOLL "$@"; echo $? >&2; } | head -1 > /dev/null',
        *("wait", "long", *CHATTY),
        env=env_of(service),
    )
    assert (ran.returncode, ran.stderr) == (0, f"{EXIT_CLOSED_OUTPUT}\n")


async def test_a_reader_gone_before_the_summary(service: FakeJobsService) -> None:
    """`jobpoll wait --quiet` writes one line, the summary, at the end: a reader gone before
    it (a pipe whose reading end is closed before the command starts, so no race with a
    `head` that reads that line first) makes the wait end quietly with 141 all the same."""
    service.add_job("long", duration=600)
    reading, writing = os.pipe()
    os.close(reading)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *["-m", "jobpoll", "wait", "long", "--quiet", "--timeout", "1", *FAST],
            stdin=subprocess.DEVNULL,
            stdout=writing,
            stderr=subprocess.PIPE,
            env=env_of(service),
        )
    finally:
        os.close(writing)
    _, err = await process.communicate()
    assert (process.returncode, err) == (EXIT_CLOSED_OUTPUT, b"")


async def test_a_quiet_wait_piped_into_head() -> None:
    """`jobpoll wait --quiet ... | head -1`: the first outcome goes to `head`; the next one,
    written once `head` has gone, stops the wait quietly with 141.

    The jobs end when the test moves the service's clock on, the second only once the
    reader has gone (it says "gone" on stderr after closing its end of the pipe): so the
    second line never slips into the pipe while `head` is still there, however slow the
    machine."""
    clock = VirtualClock()
    async with FakeJobsService(clock=clock) as service:
        first = service.add_job(duration=10)
        second = service.add_job(duration=20)
        script = (
            '{ $JOBPOLL "$@"; echo $? >&2; }'
            " | { head -1 > /dev/null; exec 0<&-; echo gone >&2; }"  # no reader left
        )
        process = await asyncio.create_subprocess_exec(
            *("sh", "-c", script, "sh", "wait", first, second, "--quiet", *FAST),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**env_of(service), "JOBPOLL": f"{sys.executable} -m jobpoll"},
        )
        try:
            assert process.stderr is not None
            async with asyncio.timeout(60):
                clock.advance(10)  # the first job ends: its outcome goes to head
                gone = await process.stderr.readline()
                clock.advance(10)  # the second ends: its outcome finds nobody to read it
                status = await process.stderr.read()
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert (process.returncode, gone, status) == (0, b"gone\n", f"{EXIT_CLOSED_OUTPUT}\n".encode())


@pytest.mark.parametrize(
    "arguments",
    [["-m", "jobpoll", "fake-server"], ["-m", "jobpoll.testing"]],
    ids=["fake-server", "testing-module"],
)
async def test_the_fake_server_piped_into_head(arguments: list[str]) -> None:
    """`jobpoll fake-server | head -1` (and `python -m jobpoll.testing`): when it stops, its
    line of counters finds nobody to read it: status 141, quietly."""
    status, line, err = await asyncio.to_thread(
        read_a_line_and_leave, arguments, cli_environment(), then_stop=True
    )
    assert "base_url" in json.loads(line)
    assert (status, err) == (EXIT_CLOSED_OUTPUT, b"")


async def test_a_full_disk(service: FakeJobsService) -> None:
    """An output that cannot be written (`> /dev/full`) stops the wait: one line, status 1."""
    if not os.path.exists("/dev/full"):  # noqa: ASYNC240 - a stat, at once
        pytest.skip("no /dev/full here")
    service.add_job("long", duration=600)
    ran = await run_in_shell(
        'exec $JOBPOLL "$@" > /dev/full', "wait", "long", *CHATTY, env=env_of(service)
    )
    assert (ran.returncode, ran.stdout) == (1, "")
    assert ran.stderr == "jobpoll wait: cannot write to standard output (No space left on device)\n"


def test_an_output_that_fails_says_so_once_then_drops_every_write() -> None:
    """An `Output` whose pipe has lost its reader: the failure (141, nothing to say) is told
    once, and every later write is dropped rather than raised."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    told = []
    with open(write_end, "w", encoding="utf-8") as stream:
        out = Output(stream, on_failure=told.append)
        out.write_json({"event": "change"})
        out.write("more\n")
        out.flush()
        out.write_json({"event": "summary"})
    assert [(str(failure), failure.exit_code) for failure in told] == [("", 141)]


#: `python -c` code running the command line as its console script does, with Ctrl-C
#: delivered at a set point of its start: as `sys.argv[1]` is imported, or (an empty
#: `sys.argv[1]`) just before `main()` is called. No timing: the signal is raised in the
#: process, at that point.
INTERRUPTED_WHILE_STARTING = """
import signal, sys

at = sys.argv.pop(1)

class InterruptAt:
    def find_spec(self, name, path=None, target=None):
        if name == at:
            signal.raise_signal(signal.SIGINT)

sys.meta_path.insert(0, InterruptAt())
from jobpoll.__main__ import main
if not at:
    signal.raise_signal(signal.SIGINT)
main()
"""


@pytest.mark.parametrize(
    "at",
    [
        pytest.param("aiohttp", id="importing-the-library"),
        pytest.param("jobpoll._client", id="importing-the-client"),
        pytest.param("", id="before-main"),
        pytest.param("jobpoll._cli", id="importing-the-command-line"),
        pytest.param("jobpoll._demo", id="in-a-command-before-its-loop"),
    ],
)
async def test_ctrl_c_while_starting(at: str) -> None:
    """Ctrl-C while the command line starts (the library's imports, the command line's, a
    command's set-up) says `interrupted` and exits 130, as Ctrl-C does during a wait: no
    traceback."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-c", INTERRUPTED_WHILE_STARTING, at, "demo", "--json"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_environment(),
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert (process.returncode, out) == (130, b"")
    assert err.decode().strip() == "jobpoll: interrupted"


async def test_an_ignored_ctrl_c_stays_ignored() -> None:
    """A process started with SIGINT ignored (a shell's background job) keeps it ignored:
    the command line's start-up handler is only for a Ctrl-C that would raise."""
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); import jobpoll.__main__;"
        " assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN"
    )
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", code)
    assert await process.wait() == 0

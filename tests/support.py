"""Helpers the tests share: waiting on the fake service's counters, checking for leftovers, a
service that shows how many requests a client sends at once, and running the `jobpoll`
command."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import attrs
import pytest
from aiohttp import web

from jobpoll import Job
from jobpoll.testing import FakeJobsService, HttpError, Slow


def add_mixed_jobs(service: FakeJobsService) -> dict[str, str]:
    """Twelve jobs of 0 to 55 s ending FINISHED, FAILED or CANCELED, and an id the service does
    not know, behind three 503s and answers slow enough for polls to stay in flight a moment:
    the jobs a test stops and resumes at random. Returns each id's expected end (a status, or
    the error's class name)."""
    expected: dict[str, str] = {}
    for number in range(12):
        final = ("FINISHED", "FAILED", "CANCELED")[number % 3]
        expected[service.add_job(duration=5 * number, final_status=final)] = final
    expected["missing-job"] = "NotFound"
    service.inject(HttpError(503), times=3)
    service.inject(Slow(0.002), times=None)  # polls stay in flight for a moment
    return expected


#: The tasks the in-process loopback servers run on their own: accepting a connection, serving
#: it (aiohttp keeps one per kept-alive connection), and handling one request on it. A client
#: that gives up mid-request (a cancellation, a timeout) closes its connection at once; the
#: server may still be accepting it or starting the request, and ends those tasks a few turns
#: of the loop later. They are the service's, not jobpoll's: nothing of the client's is in them.
SERVER_TASKS = frozenset(
    {
        "BaseSelectorEventLoop._accept_connection2",
        "RequestHandler.start",
        "RequestHandler._handle_request",
    }
)


def no_other_tasks() -> bool:
    """True when no task is left but this test's own and the loopback servers' own tasks."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    return all(getattr(task.get_coro(), "__qualname__", "") in SERVER_TASKS for task in others)


async def until(condition: Callable[[], bool], step: float = 0.001) -> None:
    """Until `condition()` holds (at most 5 s): the service's counters have no events."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(step)


async def until_idle(service: FakeJobsService) -> None:
    """Until the service has no request in progress (its handler is cancelled when the
    client closes the connection, so this proves the client let go of it)."""
    await until(lambda: service.in_flight == 0)


class CrowdService(FakeJobsService):
    """A fake service that holds its first answers until `crowd` requests are in at once.

    So a test sees whether a client sends that many requests at once without racing the
    clock: once the crowd is in, every answer goes out as usual (faults included); a client
    that never gets there has its first answers after `hold` seconds, the others at once, and
    `peak_in_flight` tells.
    """

    def __init__(self, crowd: int, *, hold: float = 5.0, **options: Any) -> None:
        super().__init__(**options)
        self._crowd = crowd
        self._hold = hold
        self._gathered = asyncio.Event()

    async def _answer(self, request: web.Request, job_id: str | None) -> web.StreamResponse:
        if self.in_flight >= self._crowd:
            self._gathered.set()
        try:
            async with asyncio.timeout(self._hold):
                await self._gathered.wait()
        except TimeoutError:
            self._gathered.set()  # the crowd never came: hold nobody any more
        return await super()._answer(request, job_id)


class BlocksOnce:
    """An async `on_update` whose first call blocks until it is cancelled."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def __call__(self, _job: Job) -> None:
        if not self.entered.is_set():
            self.entered.set()
            await asyncio.Event().wait()

    async def cancel_inside(self, step: Awaitable[object]) -> None:
        """Run `step` until it is inside the blocked call, then cancel it."""
        task = asyncio.ensure_future(step)
        await self.entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@attrs.frozen
class Ran:
    """How a run of the `jobpoll` command ended."""

    returncode: int
    stdout: str
    stderr: str

    def lines(self) -> list[dict[str, Any]]:
        """Standard output read as JSON lines (each must be one)."""
        return [json.loads(line) for line in self.stdout.splitlines()]


def cli_environment(**variables: str) -> dict[str, str]:
    """The environment for a run of `jobpoll`: this one without the CDQ_ variables (a
    developer's own must not leak in), plus `variables`."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CDQ_")}
    environment.update(variables)
    return environment


async def run_jobpoll(
    *arguments: str,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> Ran:
    """Run `python -m jobpoll` with `arguments` in a child process (stdout and stderr piped,
    so not a terminal) while this test's event loop serves the fake service."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobpoll",
        *arguments,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env if env is not None else cli_environment(),
    )
    return await finished(process, stdin)


async def finished(process: asyncio.subprocess.Process, stdin: str | None = None) -> Ran:
    """What a child process with piped stdout and stderr wrote, and its status, once it
    ends; killed if it has not within the bound (or the test is cancelled)."""
    try:
        async with asyncio.timeout(60):  # generous: a loaded machine, never a slow success
            out, err = await process.communicate(None if stdin is None else stdin.encode())
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


def env_of(service: FakeJobsService, **more: str) -> dict[str, str]:
    """The environment of a command talking to `service`, with `more` variables."""
    variables = {"CDQ_API_KEY": service.api_key, "CDQ_BASE_URL": service.base_url, **more}
    return cli_environment(**variables)


def read_terminal(
    arguments: list[str],
    env: dict[str, str],
    timeout: float = 60,
    *,
    output: Path | int | None = None,
    **terminal: str,
) -> tuple[int, str]:
    """Run `jobpoll` with its standard output on a pseudo-terminal of 120 columns and 40
    lines, `COLUMNS` and `LINES` saying so (or what `terminal` says instead); the status and
    what the terminal received, without its colours and cursor moves. With `output` (a file,
    or `subprocess.PIPE`, read and dropped), standard output goes there and standard error
    to the terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the other side closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        with contextlib.ExitStack() as files:
            stdout: int | IO[bytes] = slave
            if isinstance(output, Path):
                stdout = files.enter_context(output.open("wb"))
            elif output is not None:
                stdout = output
            process = subprocess.Popen(
                [sys.executable, "-m", "jobpoll", *arguments],
                stdout=stdout,
                stderr=subprocess.PIPE if output is None else slave,
                stdin=subprocess.DEVNULL,
                env={**env, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40", **terminal},
            )
            os.close(slave)
            try:
                _, err = process.communicate(timeout=timeout)
            finally:
                process.kill()
                process.wait()
        reader.join(timeout=10)
    finally:
        os.close(master)
    assert not err or output is not None, err
    screen = b"".join(chunks).decode("utf-8", "replace")
    return process.returncode, re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)  # no colours


class RedisServer:
    """A real `redis-server` of a test's own on a free loopback port, with `arguments` (its
    files in a directory of its own), stopped and started again at will on the same port.

    Missing `redis-server`: a skip that says how to install it, but an error when the
    environment variable `CI` is set (CI must run these tests, and `.ci/run` installs it).
    """

    def __init__(self, *arguments: str) -> None:
        self.arguments = arguments
        self.directory = tempfile.TemporaryDirectory(prefix="jobpoll-redis-")
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> Self:
        for _attempt in range(3):  # the free port may be taken between probing and binding
            self.port = _free_port()
            if self.start():
                return self
        self.directory.cleanup()
        pytest.fail("redis-server did not start on a free loopback port in three tries")

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
        self.directory.cleanup()

    def start(self) -> bool:
        """Start it (again) on its port; whether it answers."""
        server = shutil.which("redis-server")
        if server is None:
            message = "redis-server is not installed (e.g. apt-get install redis-server)"
            if os.environ.get("CI"):
                pytest.fail(f"{message}; CI must run the tests that need Redis")
            pytest.skip(f"{message}; the SAQ tests need a real Redis")
        options = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.directory.name]
        defaults = ["--save", "", "--appendonly", "no"]  # what `arguments` do not say
        self.process = subprocess.Popen(
            [server, *options, *defaults, *self.arguments],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20.0
        while self.process.poll() is None and time.monotonic() < deadline:
            if _answers_ping(self.port):
                return True
            time.sleep(0.05)
        self.stop()
        return False

    def stop(self) -> None:
        """Stop it as an operator would (SIGTERM: Redis writes its files and exits)."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith((b"+PONG", b"-NOAUTH"))  # up, or locked
    except OSError:
        return False


# The docs' snippets ---------------------------------------------------------------------------

ROOT = Path(__file__).parent.parent
#: The pages whose Python snippets the tests run: the README and every page of the docs site.
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")))
#: A Python block and the comment before it that says how the tests run it.
_SNIPPET = re.compile(r"^<!-- snippet: (.*?) -->\n```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


@attrs.frozen
class Snippet:
    """A page's Python block, and how the tests run it: `script` (as a program, against the
    fake service), `compile` (only compiled: the page's comment says why), or the test that
    runs it as written (`tests/test_x.py::test_name`)."""

    page: Path
    how: str
    code: str

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}: {self.how.split(' ', 1)[0]}"


def snippets() -> list[Snippet]:
    return [
        Snippet(page, how, code)
        for page in PAGES
        for how, code in _SNIPPET.findall(page.read_text())
    ]


def snippet_run_by(test: str) -> Snippet:
    """The one snippet the page marks as run by `test` (`tests/test_x.py::test_name`)."""
    (found,) = [s for s in snippets() if s.how.split(" ", 1)[0] == test]
    return found

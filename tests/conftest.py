"""Shared fixtures: a fake service on loopback and a client of it, both closed after each test."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from aiohttp import web
from hypothesis import HealthCheck, settings
from support import RedisServer

from jobpoll import JobsClient
from jobpoll.testing import FakeJobsService, VirtualClock

# Property tests check what is computed, never how fast: on a shared or loaded machine an
# example may take any time, so no example has a deadline and slow generation is no failure.
settings.register_profile("jobpoll", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("jobpoll")

# A suite started in the background by a script (`pytest &`) inherits SIGINT ignored, and so
# would every command the tests start: those that check what Ctrl-C does would wait on a
# process that never hears it. The tests run as in a foreground shell, Ctrl-C as Python sets it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def service(clock: VirtualClock) -> AsyncIterator[FakeJobsService]:
    async with FakeJobsService(clock=clock) as fake:
        yield fake


@pytest.fixture
async def client(service: FakeJobsService, clock: VirtualClock) -> AsyncIterator[JobsClient]:
    # The client's rate is kept on the same virtual clock as the service and the policy.
    async with JobsClient(
        service.api_key, base_url=service.base_url, clock=clock, sleep=clock.sleep
    ) as jobs:
        yield jobs


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def raw_server(
    handler: Handler | None, path: str = "/bankaccounts/jobs"
) -> AsyncIterator[str]:
    """A bare aiohttp server on loopback answering `path` with `handler`; yields its base URL."""
    app = web.Application()
    if handler is not None:
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def refusing_url() -> Iterator[str]:
    """The base URL of a loopback port where nobody listens, for as long as the block runs.

    The port is held by a bound socket that never listens, so connecting is refused, and no
    other server (another test, another process) can take the port meanwhile.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{held.getsockname()[1]}"


@contextlib.asynccontextmanager
async def raw_bytes_server(answer: bytes) -> AsyncIterator[str]:
    """A loopback server that answers every request with exactly these bytes, then hangs up."""

    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real `redis-server` on a free loopback port, with its data on disk (AOF), for the whole
    session, stopped at the end.

    Missing `redis-server`: a skip that says how to install it, but an error when the
    environment variable `CI` is set (CI must run these tests, and `.ci/run` installs it).
    """
    with RedisServer("--appendonly", "yes") as server:
        yield server.url


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The command's environment, with a key and a base URL, for `run()` in this process;
    the log handler it installs is taken away after."""
    monkeypatch.setenv("CDQ_API_KEY", "key")
    monkeypatch.setenv("CDQ_BASE_URL", "http://127.0.0.1:9/api")
    yield
    logger = logging.getLogger("jobpoll")
    for handler in [h for h in logger.handlers if type(h).__module__ == "jobpoll._output"]:
        logger.removeHandler(handler)

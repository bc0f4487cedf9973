"""jobpoll's pytest plugin, loaded by pytest through the `pytest11` entry point `jobpoll`: the
fixtures a test of your own code needs against the fake service, with no conftest.

- `jobpoll_clock`: the test's `VirtualClock`. For the test's duration, every `PollPolicy`
  and every `JobsClient` given no `clock=` run on it (the default policy of `wait_for_job`
  and `wait_for_jobs` too), so code that never passes a clock waits an hour-long job in
  milliseconds.
- `jobpoll_service`: a `FakeJobsService` on loopback, on `jobpoll_clock`, stopped after the
  test; options of the service with the marker `@pytest.mark.jobpoll_service(...)`.
- `jobpoll_env`: `CDQ_BASE_URL` and `CDQ_API_KEY` set to the service's for the test (restored
  after), for code that makes its own `JobsClient()`; its value is the service.
- `jobpoll_client`: a `JobsClient` of the service, on `jobpoll_clock`, closed after the test.

The two async fixtures are pytest-asyncio's, in its strict mode as in auto mode; without
pytest-asyncio they fail saying what to install. Loading the plugin imports neither aiohttp
nor the fake service: each fixture imports what it runs when first used, so that a pytest run
using none of them pays nothing for them.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import pytest

try:
    import pytest_asyncio
except ImportError:  # the async fixtures then fail saying what to install
    pytest_asyncio = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from jobpoll import JobsClient
    from jobpoll.testing import FakeJobsService, VirtualClock

Fixture = TypeVar("Fixture", bound=Callable[..., Any])

#: The marker whose keywords are the options of the test's `FakeJobsService`.
SERVICE_MARKER = "jobpoll_service"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{SERVICE_MARKER}(**options): options of the jobpoll_service fixture's FakeJobsService"
        " (auto_create_duration=, rate_limit=, latency=, api_key=)",
    )


def _async_fixture(function: Fixture) -> Fixture:
    """pytest-asyncio's fixture, which runs in strict mode too; without pytest-asyncio, a
    fixture that fails saying so (pytest alone would not run it, or not clean it up)."""
    if pytest_asyncio is not None:
        return cast(Fixture, pytest_asyncio.fixture(function))

    def missing() -> NoReturn:
        pytest.fail(
            f"the fixture {function.__name__} runs on an event loop: install pytest-asyncio"
            " (pip install 'jobpoll[pytest]')",
            pytrace=False,
        )

    missing.__doc__ = function.__doc__
    return cast(Fixture, pytest.fixture(name=function.__name__)(missing))


@pytest.fixture
def jobpoll_clock() -> Iterator[VirtualClock]:
    """The test's `VirtualClock`: for the test's duration, every `PollPolicy` (the default of
    `wait_for_job` and `wait_for_jobs` too) and every `JobsClient` given no `clock=` run on
    it, their jitter drawn from a generator seeded per test, so that a test repeats exactly."""
    from jobpoll._defaults import Clocks, using
    from jobpoll.testing import VirtualClock

    clock = VirtualClock()
    with using(Clocks(clock, clock.sleep, clock.wall, random.Random(0).random)):
        yield clock


@_async_fixture
async def jobpoll_service(
    jobpoll_clock: VirtualClock, request: pytest.FixtureRequest
) -> AsyncIterator[FakeJobsService]:
    """A running `FakeJobsService` on loopback, its jobs unfolding on `jobpoll_clock`; stopped
    after the test. `@pytest.mark.jobpoll_service(auto_create_duration=30)` passes options."""
    from jobpoll.testing import FakeJobsService

    marker = request.node.get_closest_marker(SERVICE_MARKER)
    options = {} if marker is None else marker.kwargs
    async with FakeJobsService(clock=jobpoll_clock, **options) as service:
        yield service


@pytest.fixture
def jobpoll_env(
    jobpoll_service: FakeJobsService, monkeypatch: pytest.MonkeyPatch
) -> FakeJobsService:
    """`CDQ_BASE_URL` and `CDQ_API_KEY` set to `jobpoll_service`'s for the test (as they were
    after it), for code that makes its own `JobsClient()`; the value is the service."""
    from jobpoll import API_KEY_ENV, BASE_URL_ENV

    monkeypatch.setenv(BASE_URL_ENV, jobpoll_service.base_url)
    monkeypatch.setenv(API_KEY_ENV, jobpoll_service.api_key)
    return jobpoll_service


@_async_fixture
async def jobpoll_client(
    jobpoll_service: FakeJobsService, jobpoll_clock: VirtualClock
) -> AsyncIterator[JobsClient]:
    """A `JobsClient` of `jobpoll_service`, its rate kept on `jobpoll_clock`; closed after
    the test."""
    from jobpoll import JobsClient

    async with JobsClient(
        jobpoll_service.api_key,
        base_url=jobpoll_service.base_url,
        clock=jobpoll_clock,
        sleep=jobpoll_clock.sleep,
    ) as client:
        yield client

"""The pytest plugin's fixtures, each run by pytest itself (`pytester`) as a user's test would
use it: loaded through the entry point, in pytest-asyncio's strict and auto modes.

Each inner run is a process of its own: run in this one, pytest would unload afterwards the
jobpoll modules it imported, and this session's tests would meet copies of their classes."""

from __future__ import annotations

import asyncio
import importlib.metadata
import math
import os
import subprocess
import sys

import pytest
from support import snippet_run_by

from jobpoll import API_KEY_ENV, BASE_URL_ENV, JobsClient, wait_for_job
from jobpoll.testing import FakeJobsService, RateLimit, VirtualClock

pytest_plugins = ["pytester"]

# What the inner runs leave out, to start in a second: plugins of this project's own tests.
QUICK = "-p no:cacheprovider -p no:hypothesispytest -p no:cov"

MODES = [pytest.param("auto", id="auto-mode"), pytest.param("strict", id="strict-mode")]


@pytest.fixture
def user(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A user's project: no conftest, pytest-asyncio in strict mode, warnings as errors, and
    neither environment variable set."""
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    monkeypatch.delenv(BASE_URL_ENV, raising=False)
    set_mode(pytester, "strict")
    return pytester


def set_mode(pytester: pytest.Pytester, mode: str) -> None:
    pytester.makeini(
        f"""
        [pytest]
        asyncio_mode = {mode}
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        addopts = --strict-markers {QUICK}
        """
    )


def marked(mode: str) -> str:
    """What an async test needs in `mode`: strict mode runs only those marked."""
    return "@pytest.mark.asyncio" if mode == "strict" else ""


def test_the_entry_point_names_the_plugin(user: pytest.Pytester) -> None:
    """pytest finds the plugin through the `pytest11` entry point: its fixtures are listed
    with no import and no conftest."""
    (entry,) = [
        entry
        for entry in importlib.metadata.entry_points(group="pytest11")
        if entry.value == "jobpoll._pytest_plugin"
    ]
    assert entry.name == "jobpoll"
    result = user.runpytest_subprocess("--fixtures")
    for name in ("jobpoll_clock", "jobpoll_service", "jobpoll_env", "jobpoll_client"):
        result.stdout.fnmatch_lines([f"{name}*"])


def test_loading_the_plugin_imports_no_aiohttp() -> None:
    """A pytest run that uses none of the fixtures pays nothing for them: the plugin's module
    imports neither aiohttp nor the fake service."""
    code = (
        "import sys, jobpoll._pytest_plugin;"
        "print(sorted(m for m in sys.modules if m.startswith(('aiohttp', 'jobpoll.'))))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert shown.strip() == "['jobpoll._pytest_plugin']"


@pytest.mark.parametrize("mode", MODES)
def test_jobpoll_clock_runs_default_waits_in_virtual_time(user: pytest.Pytester, mode: str) -> None:
    """Code that waits with the default policy, or with a policy of its own made at import
    without a clock, on a client made without one, waits hour-long jobs in virtual time; the
    next test's waits are in real time again."""
    set_mode(user, mode)
    user.makepyfile(
        f"""
        import pytest
        from jobpoll import JobsClient, PollPolicy, wait_for_job
        from jobpoll._defaults import sleeps_for_real

        PROMPT = PollPolicy(max_lateness=10)

        async def users_code(base_url, api_key, job_id, policy=None):
            async with JobsClient(api_key, base_url=base_url) as client:
                return await wait_for_job(client, job_id, timeout=7200, policy=policy)

        {marked(mode)}
        @pytest.mark.parametrize("policy", [None, PROMPT])
        async def test_an_hour(jobpoll_service, jobpoll_clock, policy):
            job_id = jobpoll_service.add_job(duration=3600)
            job = await users_code(
                jobpoll_service.base_url, jobpoll_service.api_key, job_id, policy
            )
            assert job.succeeded
            lateness = 45 if policy is None else 10
            assert 3600 <= jobpoll_clock.now - jobpoll_clock.start <= 3600 + lateness
            assert not sleeps_for_real(PROMPT.sleep)

        def test_real_time_after():
            assert sleeps_for_real(PROMPT.sleep)
        """
    )
    user.runpytest_subprocess().assert_outcomes(passed=3)


def test_jobpoll_clock_repeats_exactly(user: pytest.Pytester) -> None:
    """The default policy's jitter is drawn from a generator seeded per test: the same test
    sleeps the same delays every time."""
    user.makepyfile(
        """
        import json
        import pytest
        from jobpoll import wait_for_job

        @pytest.mark.asyncio
        @pytest.mark.parametrize("run", [1, 2])
        async def test_sleeps(jobpoll_service, jobpoll_client, jobpoll_clock, run):
            job_id = jobpoll_service.add_job("job", duration=900, progress=None)
            await wait_for_job(jobpoll_client, job_id)
            print("SLEEPS", json.dumps(jobpoll_clock.sleeps))
        """
    )
    result = user.runpytest_subprocess("-s")
    result.assert_outcomes(passed=2)
    runs = [line.split("SLEEPS", 1)[1] for line in result.outlines if "SLEEPS" in line]
    assert len(runs) == 2
    assert runs[0] == runs[1]


@pytest.mark.parametrize("mode", MODES)
def test_jobpoll_service_serves_and_stops(user: pytest.Pytester, mode: str) -> None:
    """The service runs on loopback with its scenario API, takes its options from the
    marker (registered, so strict markers pass), and is stopped after the test."""
    set_mode(user, mode)
    user.makepyfile(
        f"""
        import aiohttp
        import pytest
        from jobpoll import wait_for_job
        from jobpoll.testing import HttpError

        served = []

        {marked(mode)}
        async def test_scenario(jobpoll_service, jobpoll_client, jobpoll_clock):
            served.append(jobpoll_service.base_url)
            assert jobpoll_service.base_url.startswith("http://127.0.0.1:")
            job_id = jobpoll_service.add_job(duration=60)
            jobpoll_service.inject(HttpError(503, retry_after=60), times=2)
            job = await wait_for_job(jobpoll_client, job_id)
            assert job.succeeded
            assert jobpoll_clock.sleeps[:2] == [60, 60]
            assert jobpoll_service.request_count(job_id) >= 3

        {marked(mode)}
        @pytest.mark.jobpoll_service(auto_create_duration=30)
        async def test_marker(jobpoll_client, jobpoll_clock):
            job = await wait_for_job(jobpoll_client, "never-added")
            assert job.succeeded
            assert jobpoll_clock.now - jobpoll_clock.start >= 30

        {marked(mode)}
        async def test_stopped():
            async with aiohttp.ClientSession() as session:
                with pytest.raises(aiohttp.ClientConnectionError):
                    await session.get(served[0] + "/bankaccounts/jobs?jobId=x")
        """
    )
    user.runpytest_subprocess().assert_outcomes(passed=3)


@pytest.mark.parametrize("mode", MODES)
def test_jobpoll_env_sets_and_restores(user: pytest.Pytester, mode: str) -> None:
    """Code that reads CDQ_BASE_URL and CDQ_API_KEY reaches the service; both are unset again
    after the test, and a sync test may use the fixture too."""
    set_mode(user, mode)
    user.makepyfile(
        f"""
        import os
        import pytest
        from jobpoll import JobsClient, wait_for_job

        {marked(mode)}
        async def test_reads_them(jobpoll_env):
            assert os.environ["CDQ_BASE_URL"] == jobpoll_env.base_url
            assert os.environ["CDQ_API_KEY"] == jobpoll_env.api_key
            job_id = jobpoll_env.add_job(duration=600)
            async with JobsClient() as client:
                job = await wait_for_job(client, job_id)
            assert job.succeeded

        def test_sync(jobpoll_env):
            assert os.environ["CDQ_BASE_URL"] == jobpoll_env.base_url

        def test_restored():
            assert "CDQ_BASE_URL" not in os.environ
            assert "CDQ_API_KEY" not in os.environ
        """
    )
    user.runpytest_subprocess().assert_outcomes(passed=3)
    assert API_KEY_ENV not in os.environ


def test_jobpoll_client_is_closed_after(user: pytest.Pytester) -> None:
    """The client is of the service and is closed once its test is over."""
    user.makepyfile(
        """
        import pytest
        from jobpoll import ClientStateError

        clients = []

        @pytest.mark.asyncio
        async def test_uses_it(jobpoll_service, jobpoll_client):
            clients.append(jobpoll_client)
            assert jobpoll_client.base_url == jobpoll_service.base_url
            job_id = jobpoll_service.add_job()
            assert (await jobpoll_client.get_job(job_id)).succeeded

        @pytest.mark.asyncio
        async def test_closed():
            with pytest.raises(ClientStateError):
                await clients[0].get_job("any")
        """
    )
    user.runpytest_subprocess().assert_outcomes(passed=2)


def test_guide_example(user: pytest.Pytester) -> None:
    """The testing guide's test of one's own code with the plugin passes as written, in a
    project configured as the guide says (auto mode)."""
    block = snippet_run_by("tests/test_pytest_plugin.py::test_guide_example").code
    assert "jobpoll_env" in block
    set_mode(user, "auto")
    user.makepyfile(test_guide_example=block)
    user.runpytest_subprocess().assert_outcomes(passed=1)


def test_without_pytest_asyncio(user: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without pytest-asyncio, tests that use no async fixture run as before, and one that
    does fails saying what to install."""
    user.makeini(f"[pytest]\naddopts = -p no:asyncio {QUICK}\n")
    shadow = user.mkdir("shadow")
    (shadow / "pytest_asyncio.py").write_text("raise ImportError('not installed')\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow))
    user.makepyfile(
        """
        from jobpoll import PollPolicy
        from jobpoll._defaults import sleeps_for_real

        def test_plain():
            assert sleeps_for_real(PollPolicy().sleep)

        def test_clock(jobpoll_clock):
            assert PollPolicy().clock() == jobpoll_clock.now

        def test_service(jobpoll_service):
            pass
        """
    )
    result = user.runpytest_subprocess()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*jobpoll_service runs on an event loop: install pytest-asyncio*"])


def test_a_fanout_in_virtual_time(user: pytest.Pytester) -> None:
    """`wait_for_jobs` without a policy waits many hour-long jobs in virtual time too."""
    user.makepyfile(
        """
        import pytest
        from jobpoll import wait_for_jobs

        @pytest.mark.asyncio
        async def test_fanout(jobpoll_service, jobpoll_client, jobpoll_clock):
            ids = [jobpoll_service.add_job(duration=3600) for _ in range(20)]
            results = await wait_for_jobs(jobpoll_client, ids)
            assert all(result.ok for result in results)
            assert jobpoll_clock.now - jobpoll_clock.start >= 3600
        """
    )
    user.runpytest_subprocess().assert_outcomes(passed=1)


async def test_a_client_without_a_clock_keeps_its_rate_on_jobpoll_clock(
    jobpoll_service: FakeJobsService, jobpoll_clock: VirtualClock
) -> None:
    """A client made without `clock=` during a test on `jobpoll_clock` waits for its turns
    under a learned rate on that clock: its waits of at most a second are there, beside the
    waits' own pauses (never under 1.6 s with the default policy)."""
    jobpoll_service.rate_limit = RateLimit(rate=0.5, burst=1)
    ids = [jobpoll_service.add_job(duration=60) for _ in range(5)]
    async with JobsClient(jobpoll_service.api_key, base_url=jobpoll_service.base_url) as client:
        jobs = await asyncio.gather(*(wait_for_job(client, job_id) for job_id in ids))
        assert client.rate < math.inf
    assert all(job.succeeded for job in jobs)
    assert [delay for delay in jobpoll_clock.sleeps if delay <= 1.0]

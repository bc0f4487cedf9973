"""jobpoll on uvloop's event loop, when the `uvloop` extra is installed.

jobpoll runs on whatever loop the caller runs and never installs a loop policy: these tests
run a few cases on a loop made by `uvloop.new_event_loop`, passed as `asyncio.Runner`'s
`loop_factory`, as a user would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from support import no_other_tasks, until

from jobpoll import JobsClient, PollPolicy, wait_for_job, wait_for_jobs
from jobpoll.testing import FakeJobsService, VirtualClock

uvloop = pytest.importorskip("uvloop")

T = TypeVar("T")


def on_uvloop(scenario: Callable[[], Awaitable[T]]) -> T:
    """Run `scenario` to its end on a fresh uvloop loop, with no policy installed."""
    policy = asyncio.get_event_loop_policy()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(_checked(scenario))
    assert asyncio.get_event_loop_policy() is policy
    return result


async def _checked(scenario: Callable[[], Awaitable[T]]) -> T:
    assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
    return await scenario()


def test_get_job_and_wait_for_job() -> None:
    """One look and one wait (an hour in virtual time) on uvloop."""

    async def scenario() -> tuple[str, str]:
        clock = VirtualClock()
        async with FakeJobsService(clock=clock) as service:
            job_id = service.add_job(duration=3600, final_status="FINISHED")
            policy = PollPolicy(clock=clock, sleep=clock.sleep)
            async with JobsClient(service.api_key, base_url=service.base_url) as client:
                first = await client.get_job(job_id)
                last = await wait_for_job(client, job_id, policy=policy, timeout=7200)
        return first.raw_status, last.raw_status

    assert on_uvloop(scenario) == ("RUNNING", "FINISHED")


def test_wait_for_jobs() -> None:
    """A fan-out of 300 jobs, some failing, ends with one result per job on uvloop."""

    async def scenario() -> list[bool]:
        clock = VirtualClock()
        async with FakeJobsService(clock=clock) as service:
            ids = [
                service.add_job(duration=60 + i, final_status="FAILED" if i % 3 else "FINISHED")
                for i in range(300)
            ]
            policy = PollPolicy(clock=clock, sleep=clock.sleep)
            async with JobsClient(service.api_key, base_url=service.base_url) as client:
                results = await wait_for_jobs(client, ids, policy=policy, timeout=3600)
        return [result.ok for result in results]

    outcomes = on_uvloop(scenario)
    assert outcomes == [i % 3 == 0 for i in range(300)]


def test_cancelled_fan_out_leaves_nothing() -> None:
    """Cancelling the task iterating a fan-out on uvloop leaves no task behind."""

    async def scenario() -> bool:
        async with FakeJobsService(latency=0.05) as service:
            ids = [service.add_job(duration=3600) for _ in range(50)]
            async with JobsClient(service.api_key, base_url=service.base_url) as client:
                fanout = wait_for_jobs(client, ids)
                task = asyncio.ensure_future(anext(fanout))
                await until(lambda: service.in_flight > 0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await fanout.aclose()
                return fanout.in_flight == 0 and no_other_tasks()

    assert on_uvloop(scenario)

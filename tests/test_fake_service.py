"""The embedded fake service: it behaves like the real endpoint and does what tests script."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support import CrowdService, until

from jobpoll import JobsClient, JobStatus, NotFound, ServiceUnavailable
from jobpoll.testing import Body, FakeJobsService, HttpError, Patch, VirtualClock

ROOT = Path(__file__).parent.parent


async def fetch(
    service: FakeJobsService, job_id: str | None = None, **headers: str
) -> tuple[int, Any]:
    """One raw request, answering (status, decoded JSON body)."""
    params = {} if job_id is None else {"jobId": job_id}
    headers.setdefault("X-API-KEY", service.api_key)
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            service.base_url + "/bankaccounts/jobs", params=params, headers=headers
        ) as response,
    ):
        return response.status, json.loads(await response.read())


async def test_job_body_is_the_documented_shape(service: FakeJobsService) -> None:
    """A job answers with exactly the documented fields."""
    job_id = service.add_job(duration=10.0, progress_as_string=True)
    status, body = await fetch(service, job_id)
    assert status == 200
    assert set(body) == {"id", "createdAt", "user", "progress", "status"}
    assert body["createdAt"].endswith("Z")
    assert (body["id"], body["status"], body["progress"]) == (job_id, "RUNNING", "0")


@pytest.mark.parametrize(
    ("headers", "job_id", "status"),
    [
        pytest.param({"X-API-KEY": "wrong"}, "j", 401, id="wrong-key"),
        pytest.param({"Accept": "text/html"}, "j", 406, id="not-json"),
        pytest.param({}, None, 400, id="no-job-id"),
        pytest.param({}, "unknown", 404, id="unknown-job"),
    ],
)
async def test_error_bodies_carry_the_quirk(
    service: FakeJobsService, headers: dict[str, str], job_id: str | None, status: int
) -> None:
    """Errors carry the documented body, which says 400 / BAD_REQUEST whatever the status."""
    service.add_job("j")
    got, body = await fetch(service, job_id, **headers)
    assert got == status
    assert set(body) == {"id", "path", "timestamp", "message", "error", "status"}
    assert (body["status"], body["error"]) == (400, "BAD_REQUEST")
    assert body["path"] == "/bankaccount-data/rest/bankaccounts/jobs"


async def test_scripted_failure_keeps_last_progress(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A job that fails ends with the progress its curve reached; one with no progress, 0."""
    failing = service.add_job(duration=10.0, final_status="DIED", progress=lambda f: 60 * f)
    silent = service.add_job(duration=10.0, progress=None)
    clock.advance(5.0)
    assert (await client.get_job(silent)).progress == 0
    clock.advance(5.0)
    died = await client.get_job(failing)
    assert (died.status, died.progress, died.failed) == (JobStatus.DIED, 60, True)
    assert (await client.get_job(silent)).progress == 100


async def test_set_and_remove_job(service: FakeJobsService, client: JobsClient) -> None:
    """A test can pin a job's state, and make it vanish."""
    job_id = service.add_job(duration=100.0)
    service.set_job(job_id, status="ARCHIVED", progress=100)
    job = await client.get_job(job_id)
    assert (job.status, job.succeeded, job.failed) == (JobStatus.ARCHIVED, False, False)
    service.remove_job(job_id)
    with pytest.raises(NotFound):
        await client.get_job(job_id)


async def test_faults_queue_in_order(service: FakeJobsService, client: JobsClient) -> None:
    """A job's own faults come first, each for its count, then faults for any job, then jobs."""
    job_id, other = service.add_job(), service.add_job()
    service.inject(HttpError(503), times=2)
    service.inject(Patch({"status": "WAITING"}), job_id=job_id)
    outcomes = []
    for asked in (job_id, job_id, other, job_id, other):
        try:
            outcomes.append((await client.get_job(asked)).status.value)
        except ServiceUnavailable:
            outcomes.append("503")
    assert outcomes == ["WAITING", "503", "503", "FINISHED", "FINISHED"]


async def test_fault_for_ever_until_cleared(service: FakeJobsService, client: JobsClient) -> None:
    """`times=None` keeps a fault until `clear_faults`."""
    job_id = service.add_job()
    service.inject(Body("<html>down</html>", status=503, content_type="text/html"), times=None)
    for _ in range(3):
        with pytest.raises(ServiceUnavailable):
            await client.get_job(job_id)
    service.clear_faults()
    assert (await client.get_job(job_id)).succeeded


async def test_counts_and_peak_concurrency() -> None:
    """Requests are counted per job and in all, and the peak of concurrent ones is kept."""
    async with (
        CrowdService(4) as service,
        JobsClient(service.api_key, base_url=service.base_url) as client,
    ):
        first, second = service.add_job(), service.add_job()
        await asyncio.gather(*(client.get_job(job) for job in (first, first, first, second)))
    assert (service.request_count(first), service.request_count(second)) == (3, 1)
    assert service.request_count() == 4
    assert service.peak_in_flight == 4
    assert service.in_flight == 0
    assert [request.http_status for request in service.recent_requests] == [200] * 4
    assert {request.api_key for request in service.recent_requests} == {service.api_key}


async def test_auto_create(clock: VirtualClock) -> None:
    """With auto_create_duration, an unknown id becomes a job instead of a 404."""
    async with (
        FakeJobsService(clock=clock, auto_create_duration=5.0) as service,
        JobsClient(service.api_key, base_url=service.base_url) as client,
    ):
        assert (await client.get_job("new-one")).status is JobStatus.RUNNING
        clock.advance(5.0)
        assert (await client.get_job("new-one")).status is JobStatus.FINISHED


def test_scripting_refuses_nonsense() -> None:
    """Scripts that cannot happen are refused at once."""
    service = FakeJobsService()
    with pytest.raises(ValueError, match="queued"):
        service.add_job(duration=1.0, queued=2.0)
    with pytest.raises(ValueError, match="times"):
        service.inject(HttpError(503), times=0)
    with pytest.raises(RuntimeError, match="not started"):
        _ = service.base_url


def test_serves_from_the_command_line() -> None:
    """`python -m jobpoll.testing` prints where it serves, answers there until terminated,
    then prints its counters."""
    process = subprocess.Popen(
        [sys.executable, "-m", "jobpoll.testing", "--auto-create-duration", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        where = json.loads(process.stdout.readline())

        async def ask() -> JobStatus:
            async with JobsClient(where["api_key"], base_url=where["base_url"]) as client:
                return (await client.get_job("any")).status

        assert asyncio.run(ask()) is JobStatus.FINISHED
        process.terminate()
        assert process.wait(timeout=10) == 0
        assert json.loads(process.stdout.readline()) == {"requests": 1, "peak_in_flight": 1}
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_demo_runs() -> None:
    """The README's demo follows a job to its end, shows a failed and a missing job, then
    waits on a thousand at once."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py"), "--seconds", "0.6"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "FINISHED  100%" in result.stdout
    assert "Job(id=" in result.stdout
    assert "JobFailedError" in result.stdout
    assert "ended DIED at 60%" in result.stdout
    assert "NotFound" in result.stdout
    assert "and 1002 jobs at once" in result.stdout
    assert "'NotFound': 2" in result.stdout


async def test_port_in_use_leaves_nothing_running(service: FakeJobsService) -> None:
    """Starting on a taken port fails with OSError and leaves no half-started server."""
    port = int(service.base_url.split(":")[2].split("/")[0])
    second = FakeJobsService(port=port)
    with pytest.raises(OSError, match="in use"):
        await second.start()
    with pytest.raises(RuntimeError, match="not started"):
        _ = second.base_url
    await second.stop()  # stopping a service that never started is harmless


async def test_virtual_clock_moves_only_forward() -> None:
    """A `VirtualClock` records its sleeps, tells them in its repr, and never goes back."""
    clock = VirtualClock(start=0)
    await clock.sleep(2.5)
    assert (clock(), clock.sleeps) == (2.5, [2.5])
    assert repr(clock) == "<VirtualClock now=2.5 after 1 sleeps>"
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)


async def test_latency_lets_requests_overlap() -> None:
    """With `latency`, answers wait (real time), so concurrent requests are seen at once."""
    async with (
        FakeJobsService(latency=60) as service,
        JobsClient(service.api_key, base_url=service.base_url) as client,
    ):
        job_id = service.add_job(duration=0)
        asking = asyncio.gather(*(client.get_job(job_id) for _ in range(5)))
        await until(lambda: service.in_flight == 5)
        assert not asking.done()
        assert list(service.recent_requests) == []  # none answered yet
        asking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asking
    assert service.peak_in_flight == 5

"""The embedded fake service: it behaves like the real endpoint and does what tests script."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from multidict import CIMultiDictProxy
from support import CrowdService, until, until_idle

from jobpoll import (
    DecodeError,
    JobsClient,
    JobStatus,
    NotFound,
    PollPolicy,
    RateLimited,
    ServiceUnavailable,
    TransportError,
    wait_for_job,
)
from jobpoll.testing import (
    Body,
    Drop,
    FakeJobsService,
    Headers,
    HttpError,
    Patch,
    Slow,
    VirtualClock,
)

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


async def fetch_raw(
    service: FakeJobsService, job_id: str
) -> tuple[int, CIMultiDictProxy[str], bytes]:
    """One raw request, answering (status, headers, body), whatever the headers say."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            service.base_url + "/bankaccounts/jobs",
            params={"jobId": job_id},
            headers={"X-API-KEY": service.api_key},
        ) as response,
    ):
        return response.status, response.headers, await response.read()


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


async def test_fault_for_a_set_time(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """With `seconds`, a fault answers every request that comes in that time, then is
    dropped, and the faults queued after it come next."""
    job_id = service.add_job(duration=0)
    service.inject(HttpError(503), times=None, seconds=10.0)
    service.inject(Patch({"status": "WEIRD"}))
    for _ in range(3):
        with pytest.raises(ServiceUnavailable):
            await client.get_job(job_id)
    clock.advance(10.0)
    assert (await client.get_job(job_id)).raw_status == "WEIRD"
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
    with pytest.raises(ValueError, match="seconds"):
        service.inject(HttpError(503), seconds=0)
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
    """The quickstart's demo follows a job to its end, shows a failed and a missing job, then
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


#: Header values a hostile or broken server may send; the fake passes each on as given.
ODD_VALUES = [
    pytest.param("Fri, 31 Dec 9999 23:59:59 GMT", id="last-day-of-the-calendar"),
    pytest.param("Fri, 31 Dec 99999999999999999999 23:59:59 GMT", id="year-out-of-range"),
    pytest.param("Mon, 01 Jan 0001 00:00:00 +0100", id="before-the-calendar"),
    pytest.param("1e400", id="overflowing-float"),
    pytest.param("-5", id="negative"),
    pytest.param("nan", id="nan"),
    pytest.param("99999999999999999999999", id="huge"),
    pytest.param("soon, maybe", id="garbage"),
]


@pytest.mark.parametrize("value", ODD_VALUES)
async def test_error_with_odd_headers(service: FakeJobsService, value: str) -> None:
    """`HttpError(headers=...)` sends the headers exactly as given, over any it sets itself."""
    job_id = service.add_job(duration=10.0)
    service.inject(HttpError(429, retry_after=3, headers={"Retry-After": value, "Date": value}))
    status, headers, body = await fetch_raw(service, job_id)
    assert status == 429
    assert (headers["Retry-After"], headers["Date"]) == (value, value)
    assert json.loads(body)["error"] == "BAD_REQUEST"


@pytest.mark.parametrize("value", ODD_VALUES)
async def test_headers_on_a_normal_answer(service: FakeJobsService, value: str) -> None:
    """`Headers` adds headers to the job itself, and to the 404 of an unknown job."""
    job_id = service.add_job(duration=10.0)
    service.inject(Headers({"Retry-After": value, "Date": value, "X-Odd": "1"}), times=2)
    status, headers, body = await fetch_raw(service, job_id)
    assert (status, json.loads(body)["id"]) == (200, job_id)
    assert (headers["Retry-After"], headers["Date"], headers["X-Odd"]) == (value, value, "1")
    status, headers, _ = await fetch_raw(service, "no-such-job")
    assert (status, headers["Retry-After"]) == (404, value)
    status, headers, _ = await fetch_raw(service, job_id)
    assert status == 200
    assert "Retry-After" not in headers  # the fault was for two answers only


async def test_error_headers_reach_the_client(service: FakeJobsService, client: JobsClient) -> None:
    """A `Retry-After` given in `headers` is what the client reads, in seconds or as a date
    measured against the response's own `Date`."""
    job_id = service.add_job(duration=10.0)
    service.inject(HttpError(503, retry_after=60, headers={"Retry-After": "7"}))
    service.inject(
        HttpError(
            429,
            headers={
                "Date": "Wed, 01 Jan 2031 00:00:00 GMT",
                "Retry-After": "Wed, 01 Jan 2031 00:00:30 GMT",
            },
        )
    )
    with pytest.raises(ServiceUnavailable) as unavailable:
        await client.get_job(job_id)
    assert unavailable.value.retry_after == 7
    with pytest.raises(RateLimited) as limited:
        await client.get_job(job_id)
    assert limited.value.retry_after == 30


async def test_body_with_headers(service: FakeJobsService, client: JobsClient) -> None:
    """`Body(headers=...)` sends a proxy's page with its own headers."""
    job_id = service.add_job(duration=10.0)
    page = Body("<html>busy</html>", status=503, content_type="text/html")
    service.inject(attrs.evolve(page, headers={"Retry-After": "4"}))
    status, headers, body = await fetch_raw(service, job_id)
    assert (status, headers["Retry-After"], body) == (503, "4", b"<html>busy</html>")
    service.inject(page)
    with pytest.raises(ServiceUnavailable) as unavailable:
        await client.get_job(job_id)
    assert unavailable.value.retry_after is None


async def test_unknown_status_and_progress_going_back(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """`Patch` sends a status jobpoll does not know, and progress that goes back."""
    job_id = service.add_job(duration=10.0)
    clock.advance(5.0)
    service.inject(Patch({"status": "WEIRD"}))
    service.inject(Patch({"progress": 3}))
    weird = await client.get_job(job_id)
    assert (weird.status, weird.raw_status, weird.progress) == (JobStatus.UNKNOWN, "WEIRD", 50)
    assert not weird.is_terminal
    back = await client.get_job(job_id)
    assert (back.status, back.progress) == (JobStatus.RUNNING, 3)
    assert (await client.get_job(job_id)).progress == 50


async def test_a_wait_rides_out_weird_answers(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A wait sees an unknown status and progress going back as changes, and still ends."""
    job_id = service.add_job(duration=10.0)
    service.inject(Patch({"status": "WEIRD"}))
    service.inject(Patch({"progress": 40}))
    service.inject(Patch({"progress": 3}))
    seen = [
        (job.raw_status, job.progress)
        async for job in wait_for_job(
            client, job_id, policy=PollPolicy(clock=clock, sleep=clock.sleep)
        )
    ]
    assert seen[:3] == [("WEIRD", 0), ("RUNNING", 40), ("RUNNING", 3)]
    assert seen[-1] == ("FINISHED", 100)


async def test_answers_slower_than_the_request_timeout() -> None:
    """`Slow` past the client's `total_timeout` is a `TransportError`, and the service's
    handler lets go of the request at once."""
    async with (
        FakeJobsService() as service,
        JobsClient(service.api_key, base_url=service.base_url, total_timeout=0.1) as client,
    ):
        job_id = service.add_job(duration=0)
        service.inject(Slow(5.0))
        with pytest.raises(TransportError, match="no answer in time"):
            await client.get_job(job_id)
        await until_idle(service)
        assert (await client.get_job(job_id)).succeeded


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        pytest.param(Drop(mid_body=True), TransportError, id="cut-mid-body"),
        pytest.param(Body('{"id": "'), DecodeError, id="truncated-json"),
        pytest.param(Body("<html>proxy</html>", content_type="text/html"), DecodeError, id="html"),
    ],
)
async def test_broken_bodies_are_transient(
    service: FakeJobsService, client: JobsClient, fault: Drop | Body, error: type[Exception]
) -> None:
    """A body cut off, truncated or replaced by a proxy's page is an error a later poll cures."""
    job_id = service.add_job(duration=0)
    service.inject(fault)
    with pytest.raises(error) as raised:
        await client.get_job(job_id)
    assert getattr(raised.value, "transient", False)
    assert (await client.get_job(job_id)).succeeded


def test_faults_are_frozen_and_compare_by_value() -> None:
    """Faults are frozen values: equal when alike, and a variant is a new fault."""
    assert Headers({"Date": "x"}) == Headers({"Date": "x"})
    assert HttpError(503, headers={"Retry-After": "1"}) != HttpError(503)
    with pytest.raises(AttributeError):
        HttpError(503).headers = {}  # type: ignore[misc]

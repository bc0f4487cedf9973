"""`JobsClient.get_job` over real HTTP against the fake service: every answer, typed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import uuid

import aiohttp
import pytest
from conftest import raw_bytes_server, raw_server, refusing_url
from support import CrowdService

from jobpoll import (
    ApiError,
    BadRequest,
    DecodeError,
    Forbidden,
    Job,
    JobsClient,
    JobStatus,
    NotAcceptable,
    NotFound,
    PollPolicy,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    wait_for_job,
)
from jobpoll.testing import (
    Body,
    Drop,
    FakeJobsService,
    HttpError,
    Patch,
    RateLimit,
    Slow,
    VirtualClock,
)


@pytest.mark.parametrize("status", list(JobStatus), ids=[s.value for s in JobStatus])
async def test_each_documented_status(
    service: FakeJobsService, client: JobsClient, status: JobStatus
) -> None:
    """Each of the twelve statuses arrives as itself, with its outcome."""
    job_id = service.add_job()
    service.set_job(job_id, status=status, progress=42)
    job = await client.get_job(job_id)
    assert (job.id, job.status, job.raw_status, job.progress) == (job_id, status, status.value, 42)
    assert job.is_terminal is status.is_terminal


async def test_job_unfolds_in_virtual_time(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A scripted job goes SCHEDULED, RUNNING with progress, FINISHED at 100 as its clock moves."""
    job_id = service.add_job(duration=10.0, queued=2.0)
    seen = []
    for _ in range(4):
        job = await client.get_job(job_id)
        seen.append((job.status, job.progress))
        clock.advance(4.0)
    assert seen == [
        (JobStatus.SCHEDULED, 0),
        (JobStatus.RUNNING, 25),
        (JobStatus.RUNNING, 75),
        (JobStatus.FINISHED, 100),
    ]


async def test_progress_as_string_and_unknown_status(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """The reference's string progress and a never-seen status come through as typed values."""
    job_id = service.add_job(duration=10.0, running_status="PAUSED", progress_as_string=True)
    clock.advance(7.7)
    job = await client.get_job(job_id)
    assert (job.status, job.raw_status, job.progress) == (JobStatus.UNKNOWN, "PAUSED", 77)


async def test_uuid_job_id(service: FakeJobsService, client: JobsClient) -> None:
    """A UUID object is accepted as a job id."""
    job_uuid = uuid.uuid4()
    service.add_job(str(job_uuid))
    assert (await client.get_job(job_uuid)).id == str(job_uuid)


async def test_job_id_sent_as_query_parameter(service: FakeJobsService, client: JobsClient) -> None:
    """An id with URL-special characters reaches the server intact, as `jobId`, not in the path."""
    job_id = "a/b?c=d&e#f %2F ü"
    service.add_job(job_id)
    assert (await client.get_job(job_id)).id == job_id
    assert service.request_count(job_id) == 1


@pytest.mark.parametrize(
    ("status", "error_class", "transient"),
    [
        pytest.param(400, BadRequest, False, id="400"),
        pytest.param(401, Unauthorized, False, id="401"),
        pytest.param(403, Forbidden, False, id="403"),
        pytest.param(404, NotFound, False, id="404"),
        pytest.param(406, NotAcceptable, False, id="406"),
        pytest.param(429, RateLimited, True, id="429"),
        pytest.param(503, ServiceUnavailable, True, id="503"),
        pytest.param(500, ServerError, True, id="500"),
        pytest.param(502, ServerError, True, id="502"),
        pytest.param(504, ServerError, True, id="504"),
        pytest.param(408, ApiError, True, id="408"),
        pytest.param(418, ApiError, False, id="418"),
        pytest.param(410, ApiError, False, id="410"),
    ],
)
async def test_error_status(
    service: FakeJobsService,
    client: JobsClient,
    status: int,
    error_class: type[ApiError],
    transient: bool,
) -> None:
    """The HTTP status picks the error class, although the body always says 400."""
    job_id = service.add_job()
    service.inject(HttpError(status, message="Scripted failure."))
    with pytest.raises(error_class) as caught:
        await client.get_job(job_id)
    error = caught.value
    assert type(error) is error_class
    assert (error.http_status, error.job_id, error.transient) == (status, job_id, transient)
    assert (error.message, error.error) == ("Scripted failure.", "BAD_REQUEST")
    assert error.path == "/bankaccount-data/rest/bankaccounts/jobs"
    assert error.error_id is not None
    assert str(status) in str(error)
    assert "Scripted failure." in str(error)


async def test_wrong_api_key(service: FakeJobsService) -> None:
    """The fake checks the key as the real service does: a wrong one is Unauthorized."""
    job_id = service.add_job()
    async with JobsClient("not-the-key", base_url=service.base_url) as client:
        with pytest.raises(Unauthorized, match="not allowed"):
            await client.get_job(job_id)


async def test_unknown_job(client: JobsClient) -> None:
    """A job the service does not have is NotFound, carrying its id."""
    with pytest.raises(NotFound) as caught:
        await client.get_job("no-such-job")
    assert caught.value.job_id == "no-such-job"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param("7", 7.0, id="seconds"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("1.5", 1.5, id="fraction"),
        pytest.param("-3", None, id="negative"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, id="date-in-the-past"),
    ],
)
@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds(
    service: FakeJobsService, client: JobsClient, status: int, header: str, expected: float | None
) -> None:
    """Retry-After in seconds is parsed; a value that is no delay is None, a past date 0."""
    job_id = service.add_job()
    service.inject(HttpError(status, retry_after=header))
    with pytest.raises(ApiError) as caught:
        await client.get_job(job_id)
    assert caught.value.retry_after == expected


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_http_date(
    service: FakeJobsService, client: JobsClient, status: int
) -> None:
    """Retry-After as an HTTP-date is measured against the response's own Date header."""
    job_id = service.add_job()
    service.inject(HttpError(status, retry_after=120, as_date=True))
    with pytest.raises(ApiError) as caught:
        await client.get_job(job_id)
    assert caught.value.retry_after == 120.0


async def test_server_error_without_json_body(service: FakeJobsService, client: JobsClient) -> None:
    """A proxy's HTML error page is still the typed error of its status, with no server fields."""
    job_id = service.add_job()
    service.inject(Body("<html>502 Bad Gateway</html>", status=502, content_type="text/html"))
    with pytest.raises(ServerError) as caught:
        await client.get_job(job_id)
    assert (caught.value.http_status, caught.value.message, caught.value.error) == (502, None, None)


@pytest.mark.parametrize(
    ("fault", "field", "transient", "words"),
    [
        pytest.param(
            Body("<html><h1>Maintenance</h1></html>", content_type="text/html"),
            None,
            True,
            "Content-Type text/html",
            id="html-page",
        ),
        pytest.param(
            Body('{"id": "x"}', content_type="text/plain"),
            None,
            True,
            "Content-Type text/plain",
            id="wrong-content-type",
        ),
        pytest.param(Body('{"id": "35f2'), None, True, "not valid JSON", id="truncated-json"),
        pytest.param(Body("Service temporarily unavailable"), None, True, "JSON", id="not-json"),
        pytest.param(Body(""), None, True, "not valid JSON", id="empty-body"),
        pytest.param(Body("[1, 2]"), None, False, "not a JSON object", id="array"),
        pytest.param(Patch({"progress": 77.9}), "progress", False, "progress", id="progress-77.9"),
        pytest.param(Patch({"progress": True}), "progress", False, "progress", id="progress-true"),
        pytest.param(Patch({"progress": -5}), "progress", False, "progress", id="progress-neg"),
        pytest.param(Patch({"progress": 101}), "progress", False, "progress", id="progress-101"),
        pytest.param(
            Patch({"createdAt": "dolor irure"}), "createdAt", False, "createdAt", id="bad-date"
        ),
        pytest.param(Patch({"status": None}), "status", False, "status", id="null-status"),
        pytest.param(Patch({"id": "another-job"}), "id", False, "another-job", id="other-job"),
    ],
)
async def test_bad_body(
    service: FakeJobsService,
    client: JobsClient,
    fault: Body | Patch,
    field: str | None,
    transient: bool,
    words: str,
) -> None:
    """Every malformed 200 is a DecodeError naming what is wrong, with a short snippet."""
    job_id = service.add_job()
    service.inject(fault)
    with pytest.raises(DecodeError) as caught:
        await client.get_job(job_id)
    error = caught.value
    assert (error.field, error.transient, error.job_id) == (field, transient, job_id)
    assert words in str(error)
    assert len(error.snippet) <= 200
    assert error.__cause__ is None  # no bare cattrs or json traceback behind it


async def test_id_in_another_case_is_the_asked_id(
    service: FakeJobsService, client: JobsClient
) -> None:
    """A server that writes the asked id in another case answers about the same job (ids are
    compared case-insensitively, as UUIDs are), and the Job carries the id as it was asked."""
    job_id = service.add_job("35f23c03-1c22-45fe-9484-3ffe769325de")
    service.inject(Patch({"id": job_id.upper()}))
    job = await client.get_job(job_id)
    assert job.id == job_id
    service.inject(Patch({"id": "35F23C03-1c22-45fe-9484-3ffe769325de"}))
    assert (await client.get_job(uuid.UUID(job_id))).id == job_id


async def test_checkpoint_of_a_wait_answered_in_another_case(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A wait whose server answers its id upper-cased checkpoints and resumes (the snapshot
    holds the asked id, so the checkpoint's own exact check of it holds)."""
    job_id = service.add_job("9e0c8f9a-5b1d-4c1e-9b8e-2f0a6d7c4e11", duration=60)
    service.inject(Patch({"id": job_id.upper()}))
    policy = PollPolicy(clock=clock, sleep=clock.sleep)
    wait = wait_for_job(client, job_id, policy=policy, timeout=3600)
    async for job in wait:
        assert job.id == job_id
        break
    saved = json.loads(json.dumps(wait.checkpoint()))
    resumed = await wait_for_job(client, job_id, policy=policy, resume=saved)
    assert (resumed.id, resumed.succeeded) == (job_id, True)


async def test_body_without_content_type_is_read(
    service: FakeJobsService, client: JobsClient
) -> None:
    """A JSON job with no declared type (octet-stream) is read: the body speaks for itself."""
    job_id = service.add_job()
    body = f'{{"id": "{job_id}", "createdAt": "2025-03-31T14:03:04Z", "status": "WAITING"}}'
    service.inject(Body(body, content_type=None))
    assert (await client.get_job(job_id)).status is JobStatus.WAITING


async def test_oversized_body_capped(service: FakeJobsService) -> None:
    """A body over the size cap is a DecodeError, whether or not its length is announced."""
    job_id = service.add_job()
    async with JobsClient(service.api_key, base_url=service.base_url, max_body_size=1000) as client:
        service.inject(Body(b" " * 1001))
        with pytest.raises(DecodeError, match="larger than the cap of 1000 bytes"):
            await client.get_job(job_id)
        assert (await client.get_job(job_id)).id == job_id  # the cap is per response
        service.inject(Body(b" " * 5000 + b'{"id": 1}'), times=1)
        with pytest.raises(DecodeError, match="larger than"):
            await client.get_job(job_id)


async def test_default_cap_is_one_mebibyte(service: FakeJobsService, client: JobsClient) -> None:
    """By default a body of 1 MiB is read, and one of 1 MiB and one byte refused."""
    job_id = service.add_job()
    assert client.max_body_size == 1 << 20
    job = json.dumps({"id": job_id, "createdAt": "2026-01-01T00:00:00Z", "status": "RUNNING"})
    service.inject(Body(" " * ((1 << 20) - len(job)) + job))
    assert (await client.get_job(job_id)).id == job_id
    service.inject(Body(b" " * ((1 << 20) + 1)))
    with pytest.raises(DecodeError, match="larger than"):
        await client.get_job(job_id)


async def test_chunked_oversized_body_capped() -> None:
    """A body with no announced length (chunked) is cut off at the cap, never read whole."""
    streamed, endless = 0, 1 << 30
    chunk = b" " * (1 << 16)

    async def handler(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        nonlocal streamed
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            while streamed < endless:
                await response.write(chunk)
                streamed += len(chunk)
        return response

    async with (
        raw_server(handler) as base_url,
        JobsClient("k", base_url=base_url, max_body_size=4096) as client,
    ):
        with pytest.raises(DecodeError, match="larger than the cap of 4096"):
            await client.get_job("j")
    assert streamed < endless  # the client hung up long before the end


async def test_dropped_connection(service: FakeJobsService, client: JobsClient) -> None:
    """A connection closed without an answer is a transient TransportError."""
    job_id = service.add_job()
    service.inject(Drop(), times=2)  # aiohttp itself tries a dropped kept-alive request twice
    with pytest.raises(TransportError) as caught:
        await client.get_job(job_id)
    assert caught.value.transient
    assert caught.value.job_id == job_id
    assert (await client.get_job(job_id)).id == job_id  # the client recovers


async def test_connection_dropped_mid_body(service: FakeJobsService, client: JobsClient) -> None:
    """A body cut off before its announced length is a TransportError, not a DecodeError."""
    job_id = service.add_job()
    service.inject(Drop(mid_body=True))
    with pytest.raises(TransportError, match="failed"):
        await client.get_job(job_id)


async def test_connection_refused() -> None:
    """Nobody listening is a TransportError."""
    with refusing_url() as base_url:
        async with JobsClient("k", base_url=base_url) as client:
            with pytest.raises(
                TransportError, match=r"cannot connect to 127.0.0.1:\d+ \(Connection refused\)"
            ):
                await client.get_job("j")


async def test_slow_answer_times_out(service: FakeJobsService) -> None:
    """An answer slower than the read timeout is a transient TransportError."""
    job_id = service.add_job()
    async with JobsClient(service.api_key, base_url=service.base_url, read_timeout=0.1) as client:
        service.inject(Slow(5.0))
        with pytest.raises(TransportError, match="no answer in time") as caught:
            await client.get_job(job_id)
        assert caught.value.transient


async def test_total_timeout_bounds_a_slow_answer(service: FakeJobsService) -> None:
    """With a read timeout no shorter than the total one, the total one still cuts it off."""
    job_id = service.add_job()
    async with JobsClient(
        service.api_key, base_url=service.base_url, read_timeout=10.0, total_timeout=0.1
    ) as client:
        service.inject(Slow(5.0))
        with pytest.raises(TransportError, match="no answer in time"):
            await client.get_job(job_id)


async def test_per_call_timeout_shortens(service: FakeJobsService, client: JobsClient) -> None:
    """`get_job(timeout=...)` bounds one call below the client's own timeouts."""
    slow, quick = service.add_job(), service.add_job()
    # Each job its own fault: a first request cut off before it reached the service must not
    # leave its fault to the second one.
    service.inject(Slow(5.0), job_id=slow)
    with pytest.raises(TransportError, match="no answer in time"):
        await client.get_job(slow, timeout=0.1)
    service.inject(Slow(0.05), job_id=quick)
    assert (await client.get_job(quick, timeout=10.0)).id == quick


@pytest.mark.parametrize("seconds", [0, -1.0, float("nan")])
async def test_per_call_timeout_must_be_positive(
    service: FakeJobsService, client: JobsClient, seconds: float
) -> None:
    """A per-call timeout that is no positive number is refused before sending."""
    with pytest.raises(ValueError, match="timeout"):
        await client.get_job(service.add_job(), timeout=seconds)
    assert service.request_count() == 0


async def test_cancellation_propagates(service: FakeJobsService, client: JobsClient) -> None:
    """Cancelling a call in flight raises CancelledError, and the client goes on working."""
    job_id = service.add_job()
    service.inject(Slow(5.0))
    task = asyncio.create_task(client.get_job(job_id))
    while service.in_flight == 0:  # noqa: ASYNC110 - the server's counter is the signal
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await client.get_job(job_id)).id == job_id


async def test_works_under_asyncio_timeout(service: FakeJobsService, client: JobsClient) -> None:
    """An outer `asyncio.timeout` cancels the call and raises its own TimeoutError."""
    job_id = service.add_job()
    service.inject(Slow(5.0))
    with pytest.raises(TimeoutError) as caught:
        async with asyncio.timeout(0.1):
            await client.get_job(job_id)
    assert not isinstance(caught.value, TransportError)
    service.clear_faults()  # in case the request was cut off before it reached the service
    assert (await client.get_job(job_id)).id == job_id


async def test_caller_session_left_open(service: FakeJobsService) -> None:
    """A caller's session is used, never closed, and still works after the client is."""
    job_id = service.add_job()
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        async with JobsClient(service.api_key, base_url=service.base_url, session=session) as c:
            assert (await c.get_job(job_id)).id == job_id
            # The session's raise_for_status does not bypass jobpoll's own typed errors.
            with pytest.raises(NotFound):
                await c.get_job("missing")
        assert not session.closed
        async with session.get(
            service.base_url + "/bankaccounts/jobs",
            params={"jobId": job_id},
            headers={"X-API-KEY": service.api_key},
        ) as response:
            assert response.status == 200


async def test_caller_session_with_base_url(service: FakeJobsService) -> None:
    """A caller's session configured with a base_url of its own still reaches the service."""
    async with aiohttp.ClientSession(base_url="http://127.0.0.1:9/") as session:
        client = JobsClient(service.api_key, base_url=service.base_url, session=session)
        job_id = service.add_job()
        assert (await client.get_job(job_id)).id == job_id
        await client.aclose()
        assert not session.closed


async def test_owned_session_closed(service: FakeJobsService) -> None:
    """The client's own session closes with it; using it afterwards is an error."""
    client = JobsClient(service.api_key, base_url=service.base_url)
    job_id = service.add_job()
    assert isinstance(await client.get_job(job_id), Job)  # opened lazily, without `async with`
    await client.aclose()
    await client.aclose()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        await client.get_job(job_id)


async def test_pool_bounds_concurrent_requests() -> None:
    """The client's own pool holds at most max_connections requests in flight."""
    async with (
        CrowdService(3) as service,
        JobsClient(service.api_key, base_url=service.base_url, max_connections=3) as client,
    ):
        assert client.max_connections == client.pool_size == 3
        job_id = service.add_job()
        service.inject(Slow(0.05), times=None)
        jobs = await asyncio.gather(*(client.get_job(job_id) for _ in range(12)))
    assert len(jobs) == 12
    assert service.peak_in_flight == 3


async def test_json_without_any_content_type() -> None:
    """A job sent with no Content-Type header at all is read from its body."""
    body = b'{"id": "j", "createdAt": "2025-03-31T14:03:04Z", "status": "CREATED"}'
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    async with raw_bytes_server(answer) as base_url, JobsClient("k", base_url=base_url) as client:
        assert (await client.get_job("j")).status is JobStatus.CREATED


async def test_retry_after_date_against_local_clock() -> None:
    """Without a usable Date header, an HTTP-date Retry-After is measured on the local clock."""
    answer = (
        b"HTTP/1.1 503 Service Unavailable\r\nDate: yesterday\r\n"
        b"Retry-After: Fri, 31 Dec 9999 23:59:59 GMT\r\nContent-Length: 0\r\n\r\n"
    )
    async with raw_bytes_server(answer) as base_url, JobsClient("k", base_url=base_url) as client:
        with pytest.raises(ServiceUnavailable) as caught:
            await client.get_job("j")
    assert caught.value.retry_after is not None
    assert caught.value.retry_after > 10**10


@pytest.mark.parametrize("body", ["[1, 2]", "not json", '{"message": 7, "error": ""}'])
async def test_error_body_not_documented(
    service: FakeJobsService, client: JobsClient, body: str
) -> None:
    """An error body that is not the documented object leaves the server fields empty."""
    job_id = service.add_job()
    service.inject(Body(body, status=500))
    with pytest.raises(ServerError) as caught:
        await client.get_job(job_id)
    assert (caught.value.message, caught.value.error, caught.value.error_id) == (None, None, None)


async def test_a_request_paced_elsewhere_neither_waits_nor_teaches_the_rate(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """`get_job(..., paced=False)` (what `jobpoll.saq`'s workers send, paced through Redis)
    leaves at once whatever the client's rate, and its refusal cuts nothing; a paced one's
    does."""
    job_id = service.add_job(duration=1000.0)
    async with JobsClient(
        service.api_key, base_url=service.base_url, max_rate=0.01, clock=clock, sleep=clock.sleep
    ) as capped:
        start = clock()
        for _ in range(3):  # a turn each 100 s, were they paced
            await capped.get_job(job_id, paced=False)
        assert clock() == start
    service.rate_limit = RateLimit(1e-6, burst=1.0)  # one request, then refusals
    await client.get_job(job_id, paced=False)
    with pytest.raises(RateLimited):
        await client.get_job(job_id, paced=False)
    assert client.rate == math.inf
    with pytest.raises(RateLimited):
        await client.get_job(job_id)
    assert client.rate < math.inf

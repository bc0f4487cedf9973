"""`FakeJobsService`: a real `aiohttp.web` server on loopback that plays CDQ's job endpoint."""

from __future__ import annotations

import asyncio
import math
import secrets
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from types import TracebackType
from typing import Any, Self

import attrs
from aiohttp import web

from jobpoll._models import MAX_PROGRESS, MIN_PROGRESS, Job, JobStatus, job_to_wire
from jobpoll._wire import format_timestamp
from jobpoll.testing._faults import Body, Drop, Fault, Headers, HttpError, Patch, Redirect, Slow

__all__ = ["FakeJobsService", "RecordedRequest"]

#: The path prefix of the real service; `base_url` ends with it.
BASE_PATH = "/bankaccount-data/rest"
JOBS_PATH = BASE_PATH + "/bankaccounts/jobs"

#: A progress curve: the fraction of the running time gone (0..1) to percent done.
ProgressCurve = Callable[[float], float]


def linear(fraction: float) -> float:
    """Progress that grows evenly with time."""
    return 100 * fraction


@attrs.frozen
class RecordedRequest:
    """One request the fake service received (what a test reads back)."""

    job_id: str | None
    http_status: int
    api_key: str | None = attrs.field(repr=False)
    #: When the request arrived, on the service's clock.
    at: float = 0.0


@attrs.define
class _PendingFault:
    """A fault still to answer `remaining` more requests (None: until cleared), until the
    service's clock reads `until` (None: whenever they come)."""

    fault: Fault
    remaining: int | None
    until: float | None = None


@attrs.define
class _Script:
    """How one job unfolds in time, from `add_job`'s arguments."""

    job_id: str
    started: float
    created_at: datetime
    duration: float
    final_status: str
    queued: float
    progress: ProgressCurve | None
    running_status: str
    progress_as_string: bool
    user: str
    pinned: tuple[str, int] | None = None

    def state(self, now: float) -> tuple[str, int]:
        if self.pinned is not None:
            return self.pinned
        elapsed = now - self.started
        if elapsed >= self.duration:
            if JobStatus.parse(self.final_status) is JobStatus.FINISHED:
                return self.final_status, MAX_PROGRESS
            return self.final_status, self._progress_at(1.0)
        if elapsed < self.queued:
            return JobStatus.SCHEDULED.value, MIN_PROGRESS
        return self.running_status, self._progress_at(
            (elapsed - self.queued) / (self.duration - self.queued)
        )

    def _progress_at(self, fraction: float) -> int:
        if self.progress is None:
            return MIN_PROGRESS
        return max(MIN_PROGRESS, min(MAX_PROGRESS, int(self.progress(fraction))))

    def body(self, now: float) -> dict[str, Any]:
        raw_status, progress = self.state(now)
        job = Job(
            id=self.job_id,
            created_at=self.created_at,
            user=self.user,
            progress=progress,
            status=JobStatus.parse(raw_status),
            raw_status=raw_status,
        )
        wire = job_to_wire(job)
        if self.progress_as_string:
            wire["progress"] = str(progress)  # as the service's own reference example does
        return wire


class FakeJobsService:
    """A stand-in for CDQ's job-status endpoint, for demos and tests, yours and ours.

    A real `aiohttp.web` server on an ephemeral loopback port that answers
    `GET {base_url}/bankaccounts/jobs?jobId=...` as the real service does (including its quirks:
    error bodies that say 400 whatever the status, and optionally progress as a string). A
    test scripts jobs and faults, then reads back what was requested:

        async with FakeJobsService() as service:
            job_id = service.add_job(duration=2.0, final_status="FINISHED")
            service.inject(HttpError(503, retry_after=1), times=3)
            async with JobsClient(service.api_key, base_url=service.base_url) as client:
                job = await client.get_job(job_id)
            assert service.request_count(job_id) == 1

    Args:
        api_key: the key it accepts in `X-API-KEY`; a random one when None.
        clock: the time jobs unfold in (seconds, monotonic). Pass a virtual clock to move
            jobs forward without sleeping.
        port: the loopback port; 0 picks a free one.
        auto_create_duration: when set, an unknown job id becomes a job that finishes this many
            seconds after its first request, instead of a 404 (handy from another process).
        latency: seconds (real time) every answer waits before it is sent, as a real server
            over a network would; so requests overlap, and `peak_in_flight` sees them.

    Raises:
        ValueError: an option out of range (a port past 65535, a negative duration), at
            once rather than as a 500 on every answer.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        port: int = 0,
        auto_create_duration: float | None = None,
        latency: float = 0.0,
    ) -> None:
        _check_port(port)
        _check_seconds("auto_create_duration", auto_create_duration, optional=True, endless=True)
        _check_seconds("latency", latency)
        self.api_key = api_key if api_key is not None else "fake-" + secrets.token_urlsafe(16)
        self._clock = clock
        self._port = port
        self._auto_create_duration = auto_create_duration
        self._latency = latency
        self._jobs: dict[str, _Script] = {}
        self._faults: dict[str | None, deque[_PendingFault]] = {}
        self._counts: Counter[str | None] = Counter()
        self.recent_requests: deque[RecordedRequest] = deque(maxlen=10_000)
        self.in_flight = 0
        self.peak_in_flight = 0
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    def __repr__(self) -> str:
        return f"<FakeJobsService {self._base_url or 'not started'} jobs={len(self._jobs)}>"

    @property
    def base_url(self) -> str:
        """The base URL to give `JobsClient` (it ends with the real service's path)."""
        if self._base_url is None:
            raise RuntimeError("the fake service is not started: use `async with`")
        return self._base_url

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start serving on loopback (what `async with` does)."""
        app = web.Application()
        app.router.add_get(JOBS_PATH, self._handle)
        # handler_cancellation: a handler whose client left (a slow answer past the client's
        # timeout) stops at once rather than lingering until shutdown.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._base_url = f"http://{host}:{port}{BASE_PATH}"

    async def stop(self) -> None:
        """Stop serving and close every connection."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # Scripting ----------------------------------------------------------------------------

    def add_job(
        self,
        job_id: str | None = None,
        *,
        duration: float = 0.0,
        final_status: JobStatus | str = JobStatus.FINISHED,
        queued: float = 0.0,
        progress: ProgressCurve | None = linear,
        running_status: JobStatus | str = JobStatus.RUNNING,
        progress_as_string: bool = False,
        user: str = "742429-234242-4343-232323",
        created_at: datetime | None = None,
    ) -> str:
        """Script a job and return its id.

        Args:
            job_id: the id; a new UUID when None.
            duration: seconds (on the service's clock) from now until the final status.
            final_status: the status it ends in; any string, even one jobpoll does not know.
            queued: seconds it stays SCHEDULED before running.
            progress: the running job's progress curve; None reports 0 until the end.
            running_status: the status it reports while running.
            progress_as_string: send progress as a string (`"77"`), as the service's own
                reference example does.
            user: the `user` field.
            created_at: the `createdAt` field; now when None.
        """
        if job_id is None:
            job_id = str(uuid.uuid4())
        _check_seconds("duration", duration, endless=True)
        if not 0 <= queued <= duration:
            raise ValueError("queued must be between 0 and duration")
        self._jobs[job_id] = _Script(
            job_id=job_id,
            started=self._clock(),
            created_at=created_at or datetime.now(UTC).replace(microsecond=0),
            duration=duration,
            final_status=str(final_status),
            queued=queued,
            progress=progress,
            running_status=str(running_status),
            progress_as_string=progress_as_string,
            user=user,
        )
        return job_id

    def set_job(self, job_id: str, *, status: JobStatus | str, progress: int = 0) -> None:
        """Pin a job's status and progress from now on, whatever its script said."""
        self._jobs[job_id].pinned = (str(status), progress)

    def remove_job(self, job_id: str) -> None:
        """Forget a job: it is a 404 from now on."""
        del self._jobs[job_id]

    def inject(
        self,
        fault: Fault,
        *,
        job_id: str | None = None,
        times: int | None = 1,
        seconds: float | None = None,
    ) -> None:
        """Answer the next `times` requests (for `job_id`, or for any job) with `fault`.

        Faults queue up in order; a job's own faults come before those for any job. With
        `times=None` the fault stays until `clear_faults()`. With `seconds`, it answers only
        the requests that arrive within that many seconds from now (on the service's clock),
        then it is dropped: an outage of a set length, however many requests it meets, e.g.
        `inject(HttpError(503), times=None, seconds=30)`.
        """
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for ever")
        if seconds is not None and not seconds > 0:
            raise ValueError("seconds must be more than 0, or None for no time limit")
        until = None if seconds is None else self._clock() + seconds
        self._faults.setdefault(job_id, deque()).append(_PendingFault(fault, times, until))

    def clear_faults(self) -> None:
        """Drop every fault not yet answered."""
        self._faults.clear()

    def request_count(self, job_id: str | None = None) -> int:
        """How many requests asked for `job_id`, or in all when None."""
        if job_id is None:
            return sum(self._counts.values())
        return self._counts[job_id]

    # Serving ------------------------------------------------------------------------------

    def _next_fault(self, job_id: str | None) -> Fault | None:
        for key in (job_id, None) if job_id is not None else (None,):
            queue = self._faults.get(key)
            if queue and queue[0].until is not None:
                now = self._clock()
                while queue and queue[0].until is not None and now >= queue[0].until:
                    queue.popleft()  # its time is over, however many requests it answered
            if queue:
                pending = queue[0]
                if pending.remaining is not None:
                    pending.remaining -= 1
                    if pending.remaining == 0:
                        queue.popleft()
                return pending.fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        job_id = request.query.get("jobId")
        self._counts[job_id] += 1
        arrived = self._clock()
        status = 0
        try:
            if self._latency:
                await asyncio.sleep(self._latency)
            response = await self._answer(request, job_id)
            status = response.status
            return response
        finally:
            self.in_flight -= 1
            self.recent_requests.append(
                RecordedRequest(job_id, status, request.headers.get("X-API-KEY"), arrived)
            )

    async def _answer(self, request: web.Request, job_id: str | None) -> web.StreamResponse:
        patch: Mapping[str, Any] = {}
        fault = self._next_fault(job_id)
        if isinstance(fault, Slow):
            await asyncio.sleep(fault.seconds)
        elif isinstance(fault, Patch):
            patch = fault.fields
        elif isinstance(fault, Headers):
            response = self._job_response(request, job_id, patch)
            response.headers.update(fault.headers)
            return response
        elif fault is not None:
            return await self._fault_response(request, fault)
        return self._job_response(request, job_id, patch)

    def _job_response(
        self, request: web.Request, job_id: str | None, patch: Mapping[str, Any]
    ) -> web.Response:
        """The answer of the service itself: the job, or the error it gets."""
        if request.headers.get("X-API-KEY") != self.api_key:
            return _error(request, 401, "This user is not allowed to access this service.")
        accept = request.headers.get("Accept", "*/*")
        if not any(kind in accept for kind in ("application/json", "application/*", "*/*")):
            return _error(request, 406, "Only application/json can be produced.")
        if not job_id:
            return _error(request, 400, "Required parameter 'jobId' is missing.")
        script = self._jobs.get(job_id) or self._unknown_job(job_id)
        if script is None:
            return _error(request, 404, f"Job {job_id} not found.")
        body = script.body(self._clock())
        body.update(patch)
        return web.json_response(body)

    def _unknown_job(self, job_id: str) -> _Script | None:
        """The job an id not scripted yet becomes at its first request, or None (a 404)."""
        if self._auto_create_duration is None:
            return None
        self.add_job(job_id, duration=self._auto_create_duration)
        return self._jobs[job_id]

    async def _fault_response(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if isinstance(fault, HttpError):
            response = _error(request, fault.status, fault.message)
            if isinstance(fault.retry_after, str):
                response.headers["Retry-After"] = fault.retry_after
            elif fault.retry_after is not None and fault.as_date:
                now = datetime.now(UTC).replace(microsecond=0)
                response.headers["Date"] = format_datetime(now, usegmt=True)
                later = datetime.fromtimestamp(now.timestamp() + fault.retry_after, UTC)
                response.headers["Retry-After"] = format_datetime(later, usegmt=True)
            elif fault.retry_after is not None:
                response.headers["Retry-After"] = f"{fault.retry_after:g}"
            response.headers.update(fault.headers)
            return response
        if isinstance(fault, Body):
            content = fault.content.encode() if isinstance(fault.content, str) else fault.content
            response = web.Response(body=content, status=fault.status)
            if fault.content_type is None:
                response.headers.popall("Content-Type", None)
            else:
                response.headers["Content-Type"] = fault.content_type
            response.headers.update(fault.headers)
            return response
        if isinstance(fault, Redirect):
            return web.Response(status=fault.status, headers={"Location": fault.location})
        assert isinstance(fault, Drop)
        return await _drop(request, mid_body=fault.mid_body)


def _check_port(port: object) -> None:
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be a whole number from 0 to 65535, got {port!r}")


def _check_seconds(
    name: str, value: object, *, optional: bool = False, endless: bool = False
) -> None:
    """Refuse a number of seconds that is not a number, negative, NaN, or (unless `endless`:
    a job that never ends) infinite."""
    if value is None and optional:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value <= math.inf
        or (value == math.inf and not endless)
    ):
        raise ValueError(f"{name} must be a number of seconds, 0 or more, got {value!r}")


def _error(request: web.Request, status: int, message: str) -> web.Response:
    """The service's documented error body, quirk included: it says 400 whatever the status."""
    body = {
        "id": str(uuid.uuid4()),
        "path": request.path,
        "timestamp": format_timestamp(datetime.now(UTC).replace(microsecond=0)),
        "message": message,
        "error": "BAD_REQUEST",
        "status": 400,
    }
    return web.json_response(body, status=status)


async def _drop(request: web.Request, *, mid_body: bool) -> web.StreamResponse:
    transport = request.transport
    if mid_body and transport is not None:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b'{"id": "')
    if transport is not None:
        transport.close()
    # The connection is gone; this only ends the handler.
    raise asyncio.CancelledError

"""The fake service: `FakeJobsService`, a real `aiohttp.web` server on loopback that plays
CDQ's job endpoint, and its answers; `ScriptedService`, the same serving a `Scenario`'s rules
too; and `serve`, which serves a scenario from a command line."""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import random
import secrets
import signal
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Self

import attrs
from aiohttp import web

from jobpoll._exits import EXIT_FAILED, Failure, write_failure
from jobpoll._models import JobStatus
from jobpoll._wire import format_timestamp
from jobpoll.testing import _scenario as check
from jobpoll.testing._faults import (
    Body,
    Drop,
    Fault,
    Headers,
    HttpError,
    Patch,
    RateLimit,
    Redirect,
    Slow,
)
from jobpoll.testing._rules import JobScript, ProgressCurve, Scenario, linear
from jobpoll.testing._scenario import checked

#: The path prefix of the real service; `base_url` ends with it.
BASE_PATH = "/bankaccount-data/rest"
JOBS_PATH = BASE_PATH + "/bankaccounts/jobs"


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
    """An injected fault, with how many requests it still answers and until when."""

    fault: Fault
    remaining: int | None
    until: float | None = None


class FakeJobsService:
    """A stand-in for CDQ's job-status endpoint, for demos and tests: a real `aiohttp.web`
    server on a loopback port answering `GET {base_url}/bankaccounts/jobs?jobId=...` as the
    real service does, quirks included (error bodies that say 400 whatever the status,
    optionally progress as a string). A test scripts jobs and faults, then reads back what was
    requested (docs/guides/testing.md has an example).

    Args:
        api_key: the key it accepts in `X-API-KEY`; a random one when None.
        clock: the time jobs unfold in (seconds, monotonic); a `VirtualClock` moves them on
            without sleeping.
        port: the loopback port; 0 picks a free one.
        auto_create_duration: when set, an id never added becomes a job that finishes this
            many seconds after its first request; when None it is a 404, as in production.
        latency: seconds (real time) every answer waits, as over a network, so that requests
            overlap (`peak_in_flight` sees them).
        rate_limit: a token bucket every request passes first (`RateLimit`), as a gateway's;
            the attribute of that name may be set or changed while the service runs.

    Raises:
        ValueError: an option out of range (a port past 65535), at once.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        port: int = 0,
        auto_create_duration: float | None = None,
        latency: float = 0.0,
        rate_limit: RateLimit | None = None,
    ) -> None:
        self._scenario = Scenario(
            port=checked("port", port, check.port, text=False),
            latency=checked("latency", latency, check.seconds, text=False),
            auto_create_duration=checked(
                "auto_create_duration",
                auto_create_duration,
                check.optional(check.endless_seconds),
                text=False,
            ),
        )
        self.api_key = api_key if api_key is not None else "fake-" + secrets.token_urlsafe(16)
        self._clock = clock
        self.rate_limit = rate_limit
        self._random = random.Random(0)
        self._rule_uses: Counter[int] = Counter()
        self._started_at = 0.0
        self._jobs: dict[str, JobScript] = {}
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

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start serving on loopback (what `async with` does)."""
        app = web.Application()
        app.router.add_get(JOBS_PATH, self._handle)
        # A handler whose client left (a slow answer past its timeout) stops at once.
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", self._scenario.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._started_at = self._clock()
        host, port = runner.addresses[0][:2]
        self._base_url = f"http://{host}:{port}{BASE_PATH}"

    async def stop(self) -> None:
        """Stop serving and close every connection."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

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
            progress_as_string: send progress as a string (`"77"`), as the service's
                reference example does.
            user: the `user` field.
            created_at: the `createdAt` field; now when None.
        """
        if job_id is None:
            job_id = str(uuid.uuid4())
        duration = checked("duration", duration, check.endless_seconds, text=False)
        if not 0 <= queued <= duration:
            raise ValueError("queued must be between 0 and duration")
        self._jobs[job_id] = JobScript(
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
        the requests of that many seconds from now (on the service's clock): an outage.
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
        return self._counts.total() if job_id is None else self._counts[job_id]

    def _next_fault(self, job_id: str | None) -> Fault | None:
        """The rate limit's refusal first, then an injected fault (for the job, then for
        any), else a scenario's."""
        now = self._clock()
        if self.rate_limit is not None and (refusal := self.rate_limit.refusal(now)):
            return refusal
        for key in (job_id, None) if job_id is not None else (None,):
            queue = self._faults.get(key)
            while queue and queue[0].until is not None and now >= queue[0].until:
                queue.popleft()  # its time is over, however many requests it answered
            if queue:
                pending = queue[0]
                if pending.remaining is not None:
                    pending.remaining -= 1
                    if pending.remaining == 0:
                        queue.popleft()
                return pending.fault
        return None if job_id is None else self._rule_fault(job_id)

    def _rule_fault(self, job_id: str) -> Fault | None:
        elapsed = self._clock() - self._started_at
        for index, rule in enumerate(self._scenario.faults):
            if (
                rule.active(elapsed)
                and (rule.times is None or self._rule_uses[index] < rule.times)
                and fnmatch.fnmatchcase(job_id, rule.match)
                and (rule.share is None or self._random.random() < rule.share)
            ):
                self._rule_uses[index] += 1
                return rule.fault
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        job_id = request.query.get("jobId")
        self._counts[job_id] += 1
        arrived = self._clock()
        status = 0
        try:
            if self._scenario.latency:
                await asyncio.sleep(self._scenario.latency)
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
        elif isinstance(fault, HttpError):
            return _http_error(request, fault)
        elif isinstance(fault, Body):
            return _raw_body(fault)
        elif isinstance(fault, Redirect):
            return web.Response(status=fault.status, headers={"Location": fault.location})
        elif isinstance(fault, Drop):
            return await _drop(request, mid_body=fault.mid_body)
        return self._job_response(request, job_id, patch)

    def _job_response(
        self, request: web.Request, job_id: str | None, patch: Mapping[str, Any]
    ) -> web.Response:
        if request.headers.get("X-API-KEY") != self.api_key:
            return error_response(request, 401, "This user is not allowed to access this service.")
        accept = request.headers.get("Accept", "*/*")
        if not any(kind in accept for kind in ("application/json", "application/*", "*/*")):
            return error_response(request, 406, "Only application/json can be produced.")
        if not job_id:
            return error_response(request, 400, "Required parameter 'jobId' is missing.")
        script = self._jobs.get(job_id) or self._unknown_job(job_id)
        if script is None:
            return error_response(request, 404, f"Job {job_id} not found.")
        body = script.body(self._clock())
        body.update(patch)
        return web.json_response(body)

    def _unknown_job(self, job_id: str) -> JobScript | None:
        """The job an id not scripted yet becomes at its first request, or None (a 404)."""
        rule = self._scenario.rule_for(job_id)
        if rule is not None and not rule.missing:
            self.add_job(job_id, **rule.script(job_id, self._scenario.seed))
        elif rule is None and self._scenario.auto_create_duration is not None:
            self.add_job(job_id, duration=self._scenario.auto_create_duration)
        return self._jobs.get(job_id)


class ScriptedService(FakeJobsService):
    """The fake service serving a `Scenario`: jobs made from its rules at their first request,
    and its faults mixed in (after any fault `inject`ed, which come first)."""

    def __init__(self, scenario: Scenario, *, clock: Callable[[], float] = time.monotonic) -> None:
        limit = scenario.rate_limit
        super().__init__(
            api_key=scenario.api_key,
            clock=clock,
            rate_limit=None if limit is None else attrs.evolve(limit),
        )
        self._scenario = scenario  # the options too (port, latency...) are read from it
        self._random = random.Random(scenario.seed)


def serve(scenario: Scenario) -> None:
    """Serve `scenario` until SIGINT or SIGTERM: one JSON line saying where once listening,
    one of request counters once stopped; a `Failure` when it cannot listen or write."""
    try:
        asyncio.run(_serve_until_stopped(ScriptedService(scenario)))
    except BrokenPipeError as exc:  # the reader of its lines went away (`| head -1`)
        raise write_failure(exc, sys.stdout) from None
    except OSError as exc:
        raise Failure(
            f"cannot listen on 127.0.0.1:{scenario.port}"
            f" ({os.strerror(exc.errno) if exc.errno else exc})",
            EXIT_FAILED,
        ) from None


async def _serve_until_stopped(service: FakeJobsService) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with service:
            print(
                json.dumps({"base_url": service.base_url, "api_key": service.api_key}), flush=True
            )
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    counters = {"requests": service.request_count(), "peak_in_flight": service.peak_in_flight}
    print(json.dumps(counters), flush=True)


def error_response(request: web.Request, status: int, message: str) -> web.Response:
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


def _http_error(request: web.Request, fault: HttpError) -> web.Response:
    response = error_response(request, fault.status, fault.message)
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


def _raw_body(fault: Body) -> web.Response:
    content = fault.content.encode() if isinstance(fault.content, str) else fault.content
    response = web.Response(body=content, status=fault.status)
    if fault.content_type is None:
        response.headers.popall("Content-Type", None)
    else:
        response.headers["Content-Type"] = fault.content_type
    response.headers.update(fault.headers)
    return response


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

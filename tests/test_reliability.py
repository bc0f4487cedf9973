"""Promises under hostile servers, proxies and shutdowns: every answer is a `Job` or a typed
error, no job of a fan-out is lost to cancellation, the key stays out of tracebacks, every
request is bounded, and a wrong setup fails fast with one clear error."""

from __future__ import annotations

import asyncio
import contextlib
import math
import pathlib
import socket
import ssl
import traceback
import types
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobpoll import (
    ClientStateError,
    ConfigurationError,
    Forbidden,
    Job,
    JobPollError,
    JobResult,
    JobsClient,
    NotFound,
    PollPolicy,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    WaitTimeout,
    wait_for_job,
    wait_for_jobs,
)
from jobpoll._answer import parse_retry_after
from jobpoll.testing import Drop, FakeJobsService, HttpError, Slow, VirtualClock
from tests.conftest import raw_server, refusing_url
from tests.support import (
    SERVER_TASKS,
    BlocksOnce,
    add_mixed_jobs,
    no_other_tasks,
    until,
    until_idle,
)

EXTREME_DATES = [
    "Fri, 31 Dec 999999999999999999999 23:59:59 GMT",  # OverflowError in the calendar
    "Fri, 31 Dec 99999 23:59:59 GMT",
    "Fri, 31 Dec 9999 23:59:59 -2359",
    "Mon, 01 Jan 0001 00:00:00 +2359",
    "Sat, 32 Foo 2026 25:61:61 GMT",
]
ODD_SECONDS = ["1e400", "-5", "nan", "inf", "-inf", "", "   ", "1,5", "0x10", "garbage", "\u00e9"]


@pytest.fixture
def policy(clock: VirtualClock) -> PollPolicy:
    return PollPolicy(clock=clock, sleep=clock.sleep)


# 1. One header ends a whole batch -----------------------------------------------------------


@pytest.mark.parametrize("value", EXTREME_DATES + ODD_SECONDS)
@pytest.mark.parametrize("date", [None, *EXTREME_DATES])
def test_retry_after_of_any_value_is_a_number_or_none(value: str, date: str | None) -> None:
    """An extreme `Retry-After` or `Date` gives a finite delay or None, never an exception."""
    seconds = parse_retry_after(value, date)
    assert seconds is None or 0 <= seconds < math.inf


@given(
    value=st.one_of(
        st.text(max_size=60),
        st.builds(
            "{}, {:02d} {} {} {:02d}:{:02d}:{:02d} {}".format,
            st.sampled_from(["Mon", "Fri", "Xyz"]),
            st.integers(0, 99),
            st.sampled_from(["Jan", "Dec", "Foo"]),
            st.integers(0, 10**40),
            st.integers(0, 99),
            st.integers(0, 99),
            st.integers(0, 99),
            st.sampled_from(["GMT", "+2359", "-2359", "+9999", "UT", "Z", ""]),
        ),
        st.floats().map(repr),
    ),
    date=st.one_of(st.none(), st.text(max_size=60), st.sampled_from(EXTREME_DATES)),
)
def test_retry_after_property(value: str, date: str | None) -> None:
    """For any header text at all, `Retry-After` parsing yields None or 0 <= seconds < inf."""
    seconds = parse_retry_after(value, date)
    assert seconds is None or 0 <= seconds < math.inf


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Retry-After": EXTREME_DATES[0]}, id="year-overflow"),
        pytest.param({"Retry-After": EXTREME_DATES[1]}, id="year-out-of-range"),
        pytest.param(
            {"Retry-After": "Fri, 31 Dec 2100 23:59:59 GMT", "Date": EXTREME_DATES[0]},
            id="date-overflow",
        ),
        pytest.param({"Retry-After": "1e400"}, id="infinite-seconds"),
    ],
)
async def test_an_extreme_header_is_a_typed_error(headers: dict[str, str]) -> None:
    """A 503 with an extreme `Retry-After` or `Date` is a `ServiceUnavailable`, not a crash."""

    async def handler(request: web.Request) -> web.Response:
        response = web.json_response({"message": "busy"}, status=503)
        response.headers.update(headers)
        return response

    async with raw_server(handler) as base_url, JobsClient("k", base_url=base_url) as client:
        with pytest.raises(ServiceUnavailable) as caught:
            await client.get_job("j")
    retry_after = caught.value.retry_after
    assert retry_after is None or 0 <= retry_after < math.inf


async def test_a_wait_rides_out_an_extreme_retry_after(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """One such 503 is ridden out by `wait_for_job` on the policy's own schedule."""
    job_id = service.add_job(duration=10)
    service.inject(HttpError(503, retry_after=EXTREME_DATES[0]))
    job = await wait_for_job(client, job_id, policy=policy, timeout=100)
    assert job.succeeded


async def test_an_extreme_retry_after_does_not_end_a_fanout(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """Among 300 jobs, 503s with an extreme `Retry-After` end none of them."""
    job_ids = [service.add_job(duration=20) for _ in range(300)]
    service.inject(HttpError(503, retry_after=EXTREME_DATES[0]), times=40)
    results = await wait_for_jobs(client, job_ids, policy=policy, timeout=600)
    assert [result.job_id for result in results] == job_ids
    assert [result.error for result in results if not result.ok] == []


# 2. Jobs vanish without an error -----------------------------------------------------------


class SlowToDie:
    """A policy `sleep` whose sleeper, once cancelled, takes its time to end: it holds the
    fan-out inside its cleanup for as long as the test likes."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.sleeping = asyncio.Event()
        self.dying = asyncio.Event()
        self.release = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.sleeping.set()
        try:
            await asyncio.sleep(3600)  # the alarm: never rings by itself in these tests
        except asyncio.CancelledError:
            self.dying.set()
            await asyncio.shield(self.release.wait())
            raise


async def test_a_second_cancellation_during_cleanup_loses_no_job(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """Cancelled again while it cleans up after a first cancellation (a worker stopped twice),
    the fan-out still reports every job once when iterated again."""
    sleeper = SlowToDie(clock)
    policy = PollPolicy(clock=clock, sleep=sleeper.sleep)
    slow_id = service.add_job(duration=0)
    other_id = service.add_job(duration=100)
    service.inject(Slow(30), job_id=slow_id)  # its first poll stays in flight
    fanout = wait_for_jobs(client, [slow_id, other_id], policy=policy, max_in_flight=2)
    task = asyncio.ensure_future(anext(fanout))
    await until(lambda: service.request_count(other_id) == 1 and fanout.in_flight == 1)
    await sleeper.sleeping.wait()  # the other job is queued for later
    task.cancel()
    await sleeper.dying.wait()  # the first cancellation's cleanup is under way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    sleeper.release.set()

    clock.advance(200)  # both jobs are over at the service now
    async with fanout:
        reported = [result.job_id async for result in fanout]
    assert sorted(reported) == sorted([slow_id, other_id])
    assert fanout.reported == fanout.total == 2
    await until_idle(service)
    assert no_other_tasks()


async def test_a_cancellation_during_on_update_loses_no_job(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """A job whose async `on_update` is cancelled is still reported when iteration resumes."""
    job_ids = [service.add_job(duration=0) for _ in range(3)]
    on_update = BlocksOnce()
    fanout = wait_for_jobs(client, job_ids, policy=policy, on_update=on_update, max_in_flight=1)
    await on_update.cancel_inside(anext(fanout))
    async with fanout:
        reported = [result.job_id async for result in fanout]
    assert sorted(reported) == sorted(job_ids)
    assert no_other_tasks()


async def test_a_lone_wait_cancelled_in_on_update_still_yields_the_snapshot(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """`wait_for_job`'s iterator hands out a snapshot whose `on_update` was cancelled next."""
    job_id = service.add_job(duration=0)
    on_update = BlocksOnce()
    wait = wait_for_job(client, job_id, policy=policy, on_update=on_update)
    await on_update.cancel_inside(anext(wait))
    assert [job.status.value async for job in wait] == ["FINISHED"]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    cancellations=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 6), st.booleans()), max_size=6
    ),
    async_update=st.booleans(),
)
def test_fanout_invariant_under_random_cancellations(
    cancellations: list[tuple[int, int, bool]], async_update: bool
) -> None:
    """Whatever cancellations land where (a poll, a pause, `on_update`, the cleanup of an
    earlier one), every distinct id is reported exactly once with its right outcome."""
    asyncio.run(_cancelled_at_random(cancellations, async_update))


async def _cancelled_at_random(
    cancellations: list[tuple[int, int, bool]], async_update: bool
) -> None:
    clock = VirtualClock()
    async with FakeJobsService(clock=clock) as service:
        expected = add_mixed_jobs(service)

        async def on_update(job: Job) -> None:
            await asyncio.sleep(0)

        policy = PollPolicy(clock=clock, sleep=clock.sleep, max_failures=100)
        async with JobsClient(
            service.api_key, base_url=service.base_url, clock=clock, sleep=clock.sleep
        ) as client:
            fanout = wait_for_jobs(
                client,
                [*expected, *expected][:20],  # duplicates too
                policy=policy,
                max_in_flight=4,
                on_update=on_update if async_update else None,
            )
            seen: list[JobResult] = []

            async def consume() -> None:
                async for result in fanout:
                    seen.append(result)

            for ticks, second_after, twice in cancellations:
                task = asyncio.ensure_future(consume())
                for _ in range(ticks):
                    await asyncio.sleep(0)
                task.cancel()
                if twice:
                    for _ in range(second_after):
                        await asyncio.sleep(0)
                    task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            async with fanout:
                await consume()
            assert fanout.in_flight == 0
        assert sorted(result.job_id for result in seen) == sorted(expected)
        for result in seen:
            outcome = type(result.error).__name__ if result.error else "FINISHED"
            if result.job is not None and result.job.failed:
                outcome = result.job.raw_status
            assert outcome == expected[result.job_id], result


# 3. The key in tracebacks that print local variables ---------------------------------------


def _every_frame(error: BaseException) -> Iterator[types.FrameType]:
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            yield tb.tb_frame
            tb = tb.tb_next
        stack += [current.__cause__, current.__context__, getattr(current, "last_error", None)]


def _assert_key_not_shown(error: BaseException, key: str) -> None:
    """Neither a traceback printed with its locals, nor any local of any frame in the chain
    (by repr, or item by item as error trackers serialise mappings), shows the key."""
    text = "".join(traceback.TracebackException.from_exception(error, capture_locals=True).format())
    assert key not in text
    for frame in _every_frame(error):
        for value in frame.f_locals.values():
            assert key not in repr(value)
            items = getattr(value, "items", None)
            if callable(items):
                try:
                    shown = repr(list(items()))
                except Exception:  # not a mapping after all
                    continue
                assert key not in shown


@pytest.mark.parametrize("failure", ["refused", "dropped", "timeout"])
async def test_the_key_is_in_no_frame_of_a_transport_error(
    service: FakeJobsService, failure: str
) -> None:
    """A `TransportError`, printed with every frame's locals, never shows the key."""
    if failure == "timeout":
        service.inject(Slow(5))
    elif failure == "dropped":
        service.inject(Drop(), times=2)  # aiohttp sends once more after a first drop
    with refusing_url() as refusing:
        base_url = refusing if failure == "refused" else service.base_url
        async with JobsClient(service.api_key, base_url=base_url, total_timeout=0.2) as client:
            with pytest.raises(TransportError) as caught:
                await client.get_job("j")
    error = caught.value
    _assert_key_not_shown(error, service.api_key)
    assert error.__cause__ is None


async def test_the_key_is_in_no_frame_of_a_timed_out_wait(
    service: FakeJobsService, clock: VirtualClock
) -> None:
    """A `WaitTimeout` with a `TransportError` as its last error shows no key either."""
    policy = PollPolicy(clock=clock, sleep=clock.sleep, first_contact_grace=1000)
    with refusing_url() as base_url:
        async with JobsClient("secret-key-1234", base_url=base_url) as client:
            with pytest.raises(WaitTimeout) as caught:
                await wait_for_job(client, "j", policy=policy, timeout=30)
    _assert_key_not_shown(caught.value, "secret-key-1234")


# 4. Plain http through a proxy -------------------------------------------------------------


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A loopback 'proxy' that records the headers of what it is sent."""
    seen: list[dict[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"message": "proxied"}, status=502)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", seen
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("through", ["environment", "session"])
async def test_plain_http_is_refused_through_a_proxy(
    service: FakeJobsService,
    proxy: tuple[str, list[dict[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
    through: str,
) -> None:
    """A proxy in the environment (with `trust_env=True`) or the session's `proxy=`: the key
    is never sent in clear, and the error says how to exempt the host."""
    proxy_url, seen = proxy
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    if through == "environment":
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        monkeypatch.setenv("http_proxy", proxy_url)
        session = aiohttp.ClientSession(trust_env=True)
    else:
        session = aiohttp.ClientSession(proxy=proxy_url)
    async with session:
        client = JobsClient(service.api_key, base_url=service.base_url, session=session)
        with pytest.raises(ConfigurationError, match=r"through a proxy.*NO_PROXY"):
            await client.get_job("j")
    assert seen == []


async def test_a_loopback_host_exempt_in_no_proxy_is_reached_directly(
    service: FakeJobsService,
    proxy: tuple[str, list[dict[str, str]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exempted in `NO_PROXY`, the loopback host is polled directly, as docs/decisions.md says."""
    proxy_url, seen = proxy
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    job_id = service.add_job(duration=0)
    async with aiohttp.ClientSession(trust_env=True) as session:
        client = JobsClient(service.api_key, base_url=service.base_url, session=session)
        assert (await client.get_job(job_id)).succeeded
    assert seen == []


# 5. A flood of interim answers -------------------------------------------------------------


async def test_an_endless_flood_of_interim_answers_is_cut_by_the_timeout() -> None:
    """Endless `103 Early Hints` end as a `TransportError` at the request's total timeout."""
    hint = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" * 50

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        try:
            while True:
                writer.write(hint)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(flood, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with JobsClient(
            "k", base_url=f"http://127.0.0.1:{port}", total_timeout=0.3
        ) as client:
            with pytest.raises(TransportError, match="no answer in time"):
                await client.get_job("j")
    finally:
        server.close()
        await server.wait_closed()


# 6. Errors outside the tree ----------------------------------------------------------------


@pytest.mark.parametrize("seconds", [0, -1, math.nan, math.inf, "5", True])
async def test_a_bad_request_timeout_is_a_configuration_error(
    client: JobsClient, seconds: Any
) -> None:
    """`get_job(timeout=...)` out of range or of the wrong type is a `ConfigurationError`."""
    with pytest.raises(ConfigurationError, match="timeout must be a positive number"):
        await client.get_job("j", timeout=seconds)


async def test_a_session_closed_by_its_owner_is_a_client_state_error(
    service: FakeJobsService, policy: PollPolicy
) -> None:
    """A caller's session closed under the client: `ClientStateError` from every entry point,
    and a fan-out stops at once instead of reporting it per job."""
    job_id = service.add_job(duration=0)
    session = aiohttp.ClientSession()
    client = JobsClient(service.api_key, base_url=service.base_url, session=session)
    await session.close()
    with pytest.raises(ClientStateError, match="closed by its owner"):
        await client.get_job(job_id)
    with pytest.raises(ClientStateError):
        await wait_for_job(client, job_id, policy=policy)
    fanout = wait_for_jobs(client, [job_id, "other"], policy=policy)
    with pytest.raises(ClientStateError):
        await fanout
    assert fanout.reported == 0
    assert no_other_tasks()


def test_a_client_used_from_another_event_loop_is_a_client_state_error() -> None:
    """A client whose session was opened in one event loop refuses another, typed."""
    client = JobsClient("k", base_url="http://127.0.0.1:9")

    async def use_client() -> None:
        with pytest.raises(ClientStateError, match="another event loop"):
            await client.get_job("j")
        with pytest.raises(ClientStateError):
            await wait_for_jobs(client, ["j"])

    home, other = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        home.run_until_complete(client.__aenter__())
        other.run_until_complete(use_client())
        home.run_until_complete(client.aclose())
    finally:
        home.close()
        other.close()


def test_a_secret_in_the_base_url_query_is_not_quoted() -> None:
    """A refused base URL's query or fragment, where a secret may sit, is never quoted."""
    for url in ("https://api.cdq.com/rest?token=s3cr3t", "https://api.cdq.com/rest#s3cr3t"):
        with pytest.raises(ConfigurationError) as caught:
            JobsClient("k", base_url=url)
        assert "s3cr3t" not in str(caught.value)
        assert "https://api.cdq.com/rest" in str(caught.value)


# 7. A wrong setup fails fast ---------------------------------------------------------------


async def test_a_wrong_key_stops_a_fanout_with_one_error(
    service: FakeJobsService, policy: PollPolicy
) -> None:
    """2000 jobs and a wrong key: one `Unauthorized`, after at most one window of requests."""
    job_ids = [service.add_job(duration=10) for _ in range(2000)]
    async with JobsClient("wrong-key", base_url=service.base_url) as client:
        fanout = wait_for_jobs(client, job_ids, policy=policy, max_in_flight=8)
        with pytest.raises(Unauthorized):
            await fanout
    assert service.request_count() <= 8
    assert fanout.reported == 0


async def test_a_403_stops_a_fanout_with_one_error(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """A 403 ("This user is not allowed to access this service") is about the key too."""
    job_ids = [service.add_job(duration=10) for _ in range(50)]
    service.inject(HttpError(403), times=None)
    with pytest.raises(Forbidden):
        await wait_for_jobs(client, job_ids, policy=policy, max_in_flight=4)
    assert service.request_count() <= 4


async def test_await_after_a_setup_error_goes_on_with_the_pending_jobs(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """Awaited again after an error about the setup, a fan-out returns every result."""
    job_ids = [service.add_job(duration=10) for _ in range(20)]
    service.inject(HttpError(401), times=1)
    fanout = wait_for_jobs(client, job_ids, policy=policy, max_in_flight=4)
    with pytest.raises(Unauthorized):
        await fanout
    results = await fanout
    assert [result.job_id for result in results] == job_ids
    assert all(result.ok for result in results)


async def test_a_wrong_base_path_says_so(service: FakeJobsService, policy: PollPolicy) -> None:
    """When no job has ever been found, each 404 says the base URL may be wrong."""
    wrong = service.base_url.replace("/bankaccount-data/rest", "/bankaccount-data/v9")
    async with JobsClient(service.api_key, base_url=wrong) as client:
        results = await wait_for_jobs(client, ["a", "b"], policy=policy)
    for result in results:
        assert isinstance(result.error, NotFound)
        assert "is base_url (http://" in str(result.error)


async def test_a_404_after_jobs_were_found_has_no_hint(
    service: FakeJobsService, client: JobsClient
) -> None:
    """Once the client has read a job, a 404 is about its own id only."""
    await client.get_job(service.add_job(duration=0))
    with pytest.raises(NotFound) as caught:
        await client.get_job("missing")
    assert "base_url" not in str(caught.value)


async def test_a_server_that_never_answers_fails_within_the_grace(
    clock: VirtualClock, policy: PollPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    """Nobody listening: `wait_for_job` gives up after `first_contact_grace`, not minutes
    later, says so at WARNING at once, and a fan-out stops with one error."""
    with refusing_url() as base_url:
        async with JobsClient("k", base_url=base_url, clock=clock, sleep=clock.sleep) as client:
            await _never_answered(client, clock, policy, caplog)


async def _never_answered(
    client: JobsClient, clock: VirtualClock, policy: PollPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    """One wait, then a fan-out of 2000 jobs, against a port that refuses every connection."""
    with pytest.raises(TransportError, match="nothing has answered") as caught:
        await wait_for_job(client, "j", policy=policy)
    assert caught.value.never_answered
    assert not caught.value.reached
    assert 10 <= clock.now - clock.start <= 20
    assert any(record.levelname == "WARNING" for record in caplog.records)

    start = clock.now
    fanout = wait_for_jobs(client, [f"job-{n}" for n in range(2000)], policy=policy)
    with pytest.raises(TransportError, match="Connection refused"):
        await fanout
    assert clock.now - start <= 30
    assert fanout.polls <= 200


async def test_an_outage_after_contact_is_ridden_out(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """Once the server has answered, refused connections are ridden out up to max_failures."""
    job_id = service.add_job(duration=0)
    await client.get_job(job_id)
    port = int(service.base_url.split(":")[2].split("/")[0])
    await service.stop()
    with socket.socket() as held:  # the port refuses from now on, and nobody else takes it
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", port))
        policy = PollPolicy(clock=clock, sleep=clock.sleep, max_failures=4)
        with pytest.raises(TransportError, match="Connection refused") as caught:
            await wait_for_job(client, job_id, policy=policy)
    assert not caught.value.never_answered
    assert clock.now - clock.start > 10  # past the first-contact grace: 2 + 4 + 8 s


async def test_https_to_a_plain_http_port_fails_at_once(
    service: FakeJobsService, policy: PollPolicy
) -> None:
    """An https URL on a plain-http port is one clear, non-transient error, not minutes."""
    https = service.base_url.replace("http://", "https://")
    async with JobsClient(service.api_key, base_url=https) as client:
        wait = wait_for_job(client, "j", policy=policy)
        with pytest.raises(TransportError, match="TLS failed") as caught:
            await wait
        assert wait.polls == 1
        assert not caught.value.transient
        assert caught.value.affects_all
        with pytest.raises(TransportError, match="TLS failed"):
            await wait_for_jobs(client, ["a", "b", "c"], policy=policy)


async def test_a_wait_timeout_says_what_went_wrong(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """A `WaitTimeout` that never saw its job quotes the last failure in its message."""
    job_id = service.add_job(duration=1000)
    service.inject(HttpError(503), times=None)
    with pytest.raises(WaitTimeout, match=r"never seen; the last poll failed: HTTP 503"):
        await wait_for_job(client, job_id, policy=policy, timeout=20)


# Everything else a server may send ----------------------------------------------------------


@given(
    status=st.integers(100, 599).filter(lambda s: s not in (101,)),
    headers=st.dictionaries(
        st.sampled_from(["Retry-After", "Date", "Content-Type", "Location", "X-Odd"]),
        st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
        max_size=4,
    ),
    body=st.binary(max_size=200),
)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_any_answer_is_a_job_or_a_typed_error(
    status: int, headers: dict[str, str], body: bytes
) -> None:
    """Any status, headers and body a server may send give a `Job` or a `JobPollError`."""

    async def scenario() -> None:
        async def handler(request: web.Request) -> web.Response:
            response = web.Response(body=body, status=status)
            for name, value in headers.items():
                response.headers[name] = value
            return response

        async with (
            raw_server(handler) as base_url,
            JobsClient("k", base_url=base_url, total_timeout=0.2) as client,
        ):
            with contextlib.suppress(JobPollError):
                await client.get_job("j")

    asyncio.run(scenario())


# What the hostile review found -----------------------------------------------------------


async def test_a_tls_failure_after_contact_is_ridden_out() -> None:
    """Once the server has answered, a TLS failure is a passing fault, not a setup error."""
    pem = str(pathlib.Path(__file__).with_name("loopback_tls.pem"))  # 127.0.0.1's, to 2126
    served_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served_tls.load_cert_chain(pem)
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        if connections == 1:  # one answer over TLS, then plain text where TLS is expected
            await writer.start_tls(served_tls)
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        else:
            writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=pem))
    async with (
        server,
        aiohttp.ClientSession(connector=connector) as session,
        JobsClient("k", base_url=f"https://127.0.0.1:{port}", session=session) as client,
    ):
        with pytest.raises(NotFound):
            await client.get_job("j")
        with pytest.raises(TransportError, match="TLS failed") as caught:
            await client.get_job("j")
    assert caught.value.transient
    assert not caught.value.affects_all


async def test_a_poll_cancelled_by_someone_else_is_polled_again(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """A shutdown that cancels every task, the fan-out's polls included, loses no job."""
    job_ids = [service.add_job(duration=0) for _ in range(3)]
    service.inject(Slow(30), times=3)
    fanout = wait_for_jobs(client, job_ids, policy=policy)
    task = asyncio.ensure_future(anext(fanout))
    await until(lambda: fanout.in_flight == 3 and service.in_flight == 3)
    shutdown = asyncio.all_tasks() - {asyncio.current_task(), task}
    polls = [
        other
        for other in shutdown
        if getattr(other.get_coro(), "__qualname__", "") not in SERVER_TASKS
    ]
    assert len(polls) == 3
    for poll in polls:
        poll.cancel()
    first = await task
    rest = [result async for result in fanout]
    assert sorted(result.job_id for result in [first, *rest]) == sorted(job_ids)


async def test_aclose_from_another_task_ends_a_sleeping_iteration(
    service: FakeJobsService, client: JobsClient
) -> None:
    """Closed from another task while it sleeps, the iteration ends instead of hanging."""
    job_id = service.add_job(duration=1000)
    fanout = wait_for_jobs(client, [job_id])  # real sleeps: the next poll is seconds away
    task = asyncio.ensure_future(anext(fanout, None))
    await until(lambda: service.request_count(job_id) == 1 and fanout.in_flight == 0)
    await fanout.aclose()
    assert await task is None
    assert no_other_tasks()


def test_a_client_state_error_keeps_no_frame_of_aiohttp() -> None:
    """A caller's session of another event loop: a `ClientStateError` with no context whose
    frames could hold the key."""

    async def make() -> aiohttp.ClientSession:
        return aiohttp.ClientSession()

    async def use(session: aiohttp.ClientSession) -> ClientStateError:
        client = JobsClient("k-3cr3t", base_url="http://127.0.0.1:9", session=session)
        with pytest.raises(ClientStateError, match="another event loop") as caught:
            await client.get_job("j")
        return caught.value

    home, other = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        session = home.run_until_complete(make())
        error = other.run_until_complete(use(session))
        home.run_until_complete(session.close())
    finally:
        home.close()
        other.close()
    assert error.__context__ is None
    _assert_key_not_shown(error, "k-3cr3t")


@pytest.mark.parametrize("status", [200, 400])
async def test_a_server_echoing_the_key_does_not_put_it_in_an_error(status: int) -> None:
    """A server that echoes the request headers in its answer: the key is redacted."""

    async def echo(request: web.Request) -> web.Response:
        text = f"not allowed with key {request.headers['X-API-KEY']}"
        return web.json_response({"message": text, "id": text}, status=status)

    async with raw_server(echo) as base_url, JobsClient("k-3cr3t", base_url=base_url) as client:
        with pytest.raises(JobPollError) as caught:
            await client.get_job("j")
    assert "k-3cr3t" not in str(caught.value)
    assert "k-3cr3t" not in repr(vars(caught.value))
    assert "<redacted>" in str(caught.value) + repr(vars(caught.value))


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        pytest.param(StopAsyncIteration(), RuntimeError, id="stop-async-iteration"),
        pytest.param(Unauthorized(401), Unauthorized, id="jobpoll-error"),
        pytest.param(KeyError("x"), KeyError, id="bug"),
    ],
)
async def test_what_on_update_raises_closes_the_fanout_as_itself(
    service: FakeJobsService,
    client: JobsClient,
    policy: PollPolicy,
    raised: Exception,
    expected: type[Exception],
) -> None:
    """An `on_update` error is raised as itself (a `StopAsyncIteration` as a `RuntimeError`,
    never the silent end of the loop) and closes the fan-out, whatever its type."""
    job_ids = [service.add_job(duration=0) for _ in range(4)]

    def on_update(job: Job) -> None:
        raise raised

    fanout = wait_for_jobs(client, job_ids, policy=policy, on_update=on_update)
    with pytest.raises(expected):
        async for _ in fanout:
            pass
    assert [result async for result in fanout] == []  # closed
    with pytest.raises(expected):
        await wait_for_job(client, job_ids[0], policy=policy, on_update=on_update)


async def test_an_awaited_wait_owes_no_stale_snapshot(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """Awaited to its end after an `on_update` was cancelled, the wait yields nothing more."""
    job_id = service.add_job(duration=0)
    on_update = BlocksOnce()
    wait = wait_for_job(client, job_id, policy=policy, on_update=on_update)
    await on_update.cancel_inside(wait)
    assert (await wait).succeeded
    assert [job async for job in wait] == []

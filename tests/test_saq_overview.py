"""An operator's view of a SAQ queue (`SaqWaits.overview()`, `jobpoll queue`), read from a real
Redis holding waits in each state a fleet leaves them in."""

from __future__ import annotations

import asyncio
import math
import re
import signal
import uuid
from typing import Any

import pytest

pytest.importorskip("saq", reason="the saq extra is not installed (pip install '.[saq]')")

from saq import Queue
from support import cli_environment, run_jobpoll
from test_saq import Fleet, eventually, fleet_of, service  # noqa: F401 - `service`: the fixture

from jobpoll import JobResult
from jobpoll._saq_links import Links
from jobpoll._saq_outcomes import Outcomes
from jobpoll._saq_overview import place, read_overview
from jobpoll.saq import QueueOverview, result_to_json
from jobpoll.testing import FakeJobsService, HttpError, Slow

pytestmark = pytest.mark.timeout(120)

#: A link's SAQ timeout in these tests: once past it, a dead worker's link is stuck.
POLL_TIMEOUT = 10.0


@pytest.mark.parametrize(
    ("link", "score", "now", "where"),
    [
        pytest.param("a", 0.0, 100.0, "in_flight", id="active"),
        pytest.param("b", 0.0, 100.0, "stuck", id="active-past-its-timeout"),
        pytest.param("c", None, 100.0, "lost", id="in-no-queue"),
        pytest.param("c", 0.0, 100.0, "due", id="queued"),
        pytest.param("c", 99.0, 100.0, "due", id="scheduled-for-a-time-passed"),
        pytest.param("c", 101.0, 100.0, "scheduled", id="scheduled-later"),
        pytest.param("c", -99.0, 100.0, "due", id="due-by-redis-for-a-time-passed"),
        pytest.param("c", -101.0, 100.0, "scheduled", id="due-by-redis-later"),
    ],
)
def test_where_a_live_wait_is(link: str, score: float | None, now: float, where: str) -> None:
    """A live link is in flight or stuck by SAQ's active list, else due, scheduled or lost by
    its score in SAQ's `incomplete` set."""
    assert place(link, score, {"a": False, "b": True}, now) == where


async def overview_when(fleet: Fleet, **wanted: int) -> QueueOverview:
    """The queue's overview, once its counts are those `wanted`."""
    seen: list[QueueOverview] = []

    async def matches() -> bool:
        seen.append(await fleet.waits.overview())
        counts = seen[-1].to_dict()
        return all(counts[name] == value for name, value in wanted.items())

    try:
        await eventually(matches, "the wanted overview")
    except TimeoutError:
        raise AssertionError(f"wanted {wanted}, last seen {seen[-1]}") from None
    return seen[-1]


async def test_the_overview_counts_each_state_and_the_command_shows_it(
    redis_url: str,
    service: FakeJobsService,  # noqa: F811 - test_saq's fixture
) -> None:
    """Delivered and undelivered outcomes, a dead worker's stuck link, waits due with no
    worker, the oldest wait and the rate a 429 taught the fleet: in the overview, and in
    `jobpoll queue`'s table and JSON."""
    done = [service.add_job(duration=0) for _ in range(2)]
    service.inject(HttpError(429, retry_after=1), job_id=done[0])
    held = service.add_job(duration=math.inf)
    service.inject(Slow(600.0), job_id=held, times=None)  # its polls never come back
    waiting = [service.add_job(duration=math.inf) for _ in range(3)]
    async with fleet_of(redis_url, service, 0, poll_timeout=POLL_TIMEOUT) as fleet:
        fleet.start(1, request_timeout=600.0)  # the held poll outlasts the link's timeout
        await fleet.ready()
        assert await fleet.waits.submit(done) == [True, True]
        await overview_when(fleet, delivered=2, live=0)
        # As if the outcome function had not returned for one of them (yet).
        await fleet.redis.hdel(f"jobpoll:{fleet.queue_name}:wait:{done[1]}", "delivered")
        assert await fleet.waits.submit([held]) == [True]
        await eventually(lambda: service.request_count(held) >= 1, "the held poll")
        worker = fleet.processes[0]
        worker.send_signal(signal.SIGKILL)  # its link stays in SAQ's active list
        await asyncio.to_thread(worker.wait, 30)
        assert await fleet.waits.submit(waiting) == [True, True, True]  # no worker takes them
        overview = await overview_when(fleet, stuck=1)
        table = await run_jobpoll("queue", fleet.redis_url, "--queue", fleet.queue_name)
        ran = await run_jobpoll(
            "queue", "--queue", fleet.queue_name, "--json", env=cli_environment(REDIS_URL=redis_url)
        )
    expected: dict[str, Any] = {
        "queue": fleet.queue_name,
        "live": 4,
        "due": 3,
        "scheduled": 0,
        "in_flight": 0,
        "stuck": 1,
        "lost": 0,
        "delivered": 1,
        "undelivered": 1,
    }
    assert overview.to_dict().items() >= expected.items()
    assert overview.oldest is not None
    assert 0 <= overview.oldest < 600
    assert overview.rate is not None
    assert overview.rate > 0
    assert (ran.returncode, ran.stderr) == (0, "")
    [shown] = ran.lines()
    assert shown.items() >= expected.items()
    assert set(shown) == set(overview.to_dict())
    assert (table.returncode, table.stderr) == (0, "")
    for label, count in [("waits live", 4), ("due", 3), ("stuck", 1), ("undelivered", 1)]:
        assert re.search(rf"^\s*{label}\s+{count}\s", table.stdout, re.MULTILINE), table.stdout
    assert re.search(r"^\s*fleet rate\s+[0-9.,]+ polls/s\s", table.stdout, re.M), table.stdout


async def test_the_command_names_no_password_and_says_why_it_cannot_read() -> None:
    """A Redis that cannot be reached is one line and status 4, without the URL's password;
    a URL that is no Redis one is status 2."""
    ran = await run_jobpoll("queue", "redis://:s3cret-pw@127.0.0.1:1/0", "--queue", "q")
    assert ran.returncode == 4
    assert ran.stderr.startswith("jobpoll queue: cannot read the queue from Redis: ")
    assert len(ran.stderr.splitlines()) == 1
    assert "s3cret" not in ran.stderr + ran.stdout
    ran = await run_jobpoll("queue", "http://user:s3cret-pw@example.com", "--queue", "q")
    assert (ran.returncode, ran.stdout) == (2, "")
    assert ran.stderr == "jobpoll queue: REDIS_URL must be a redis://, rediss:// or unix:// URL\n"


async def test_an_outcome_with_no_on_outcome_is_counted_delivered(redis_url: str) -> None:
    """With no `on_outcome`, an outcome is delivered once kept: the overview counts it
    delivered, never undelivered, and `undelivered()` does not list it."""
    queue = Queue.from_url(redis_url, name="o" + uuid.uuid4().hex[:8])
    links = Links(queue=queue, poll_timeout=POLL_TIMEOUT, outcome_ttl=60.0)
    outcomes = Outcomes(links=links, function=None, retries=3, timeout=60.0)
    job_id = "35f23c03-1c22-45fe-9484-3ffe769325de"
    try:
        assert await links.submit([job_id], None) == [True]
        data = result_to_json(JobResult(job_id, None, None), polls=0)
        assert await links.deliver(data, outcomes.job(data), 0, answered_at=None)
        overview = await read_overview(links)
        assert (overview.delivered, overview.undelivered, overview.live) == (1, 0, 0)
        assert await outcomes.undelivered() == []
        assert await outcomes.delivered() == 1
    finally:
        await queue.disconnect()


async def test_a_queue_named_with_a_pattern_s_characters_counts_its_own_waits(
    redis_url: str,
) -> None:
    """Queue names may hold `*`, `?`, `[`, `]` or a backslash: the scans of a queue's keys
    (the overview's, mending's) find that queue's waits and no other queue's."""
    tag = uuid.uuid4().hex[:8]
    names = [f"s*{tag}", f"sx{tag}", f"b[1]{tag}", f"b?\\{tag}"]
    queues = [Queue.from_url(redis_url, name=name) for name in names]
    try:
        for index, queue in enumerate(queues):
            links = Links(queue=queue, poll_timeout=POLL_TIMEOUT, outcome_ttl=60.0)
            job_ids = [str(uuid.UUID(int=index * 10 + n)) for n in range(index + 1)]
            assert await links.submit(job_ids, None) == [True] * len(job_ids)
        for index, queue in enumerate(queues):
            links = Links(queue=queue, poll_timeout=POLL_TIMEOUT, outcome_ttl=60.0)
            overview = await read_overview(links)
            assert (overview.queue, overview.live) == (names[index], index + 1)
            found = [job_id async for batch in links.waits() for job_id in batch]
            assert len(found) == index + 1
    finally:
        for queue in queues:
            await queue.disconnect()

"""Metrics through OpenTelemetry's API, read with the SDK's in-memory reader: a lone wait, a
fan-out and a SAQ worker report the same instruments, with the same attributes."""

from __future__ import annotations

import asyncio
import math
import re
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk.metrics", reason="the otel test extra is not installed")

from opentelemetry import metrics as otel
from opentelemetry.sdk.metrics import Counter as OtelCounter
from opentelemetry.sdk.metrics import Histogram as OtelHistogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics import UpDownCounter as OtelUpDownCounter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
)

from jobpoll import JobsClient, JobStatus, PollPolicy, wait_for_job, wait_for_jobs
from jobpoll.testing import FakeJobsService, HttpError, VirtualClock

#: Every instrument jobpoll has, as docs/metrics.md lists them (`test_the_page_lists_them`).
NAMES = {
    "jobpoll.polls",
    "jobpoll.polls.throttled",
    "jobpoll.polls.active",
    "jobpoll.waits.ended",
    "jobpoll.wait.duration",
}

Points = dict[str, Counter[tuple[tuple[str, Any], ...]]]


@pytest.fixture(scope="session")
def reader() -> Iterator[InMemoryMetricReader]:
    """The process's meter provider (it can be set once), read in deltas: each read holds
    what was recorded since the one before."""
    delta = AggregationTemporality.DELTA
    reader = InMemoryMetricReader(
        preferred_temporality={
            OtelCounter: delta,
            OtelUpDownCounter: delta,
            OtelHistogram: delta,
        }
    )
    provider = MeterProvider(metric_readers=[reader])
    otel.set_meter_provider(provider)
    yield reader
    provider.shutdown()


@pytest.fixture
def recorded(reader: InMemoryMetricReader) -> Callable[[], Points]:
    """What jobpoll records during the test, from a reading taken at its start."""
    reader.get_metrics_data()
    return lambda: read(reader)


def read(reader: InMemoryMetricReader) -> Points:
    """Each instrument's data points since the last reading, by attributes: a sum's value, a
    histogram's count."""
    points: Points = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data is not None else ():
        for scope in resource.scope_metrics:
            if scope.scope.name != "jobpoll":
                continue
            for metric in scope.metrics:
                counts = points.setdefault(metric.name, Counter())
                for point in metric.data.data_points:
                    value = point.count if isinstance(point, HistogramDataPoint) else point.value
                    counts[tuple(sorted((point.attributes or {}).items()))] += value
    return points


def check_one_wait_with_one_throttle(points: Points) -> None:
    """What a wait on a job that ended FINISHED, one of its polls refused with a 429, records."""
    assert set(points) == NAMES
    polls = points["jobpoll.polls"]
    assert polls[(("error.type", "RateLimited"), ("jobpoll.poll.outcome", "refused"))] == 1
    assert polls[(("jobpoll.poll.outcome", "answered"),)] >= 1
    assert points["jobpoll.polls.throttled"] == Counter({(("http.response.status_code", 429),): 1})
    assert sum(points["jobpoll.polls.active"].values()) == 0  # every poll came back
    finished = (("jobpoll.job.status", "FINISHED"),)
    assert points["jobpoll.waits.ended"] == Counter({finished: 1})
    assert points["jobpoll.wait.duration"] == Counter({finished: 1})


def test_the_page_lists_them() -> None:
    """docs/metrics.md's table names every instrument, and no other."""
    page = (Path(__file__).parent.parent / "docs" / "metrics.md").read_text()
    assert set(re.findall(r"^\| `(jobpoll\.[a-z._]+)` \|", page, re.M)) == NAMES


async def test_a_lone_wait_records_polls_throttles_and_its_end(
    service: FakeJobsService,
    client: JobsClient,
    clock: VirtualClock,
    recorded: Callable[[], Points],
) -> None:
    """`wait_for_job` counts each poll by outcome, the throttled one, and the wait's end."""
    job_id = service.add_job(duration=5)
    service.inject(HttpError(429, retry_after=1), job_id=job_id)
    policy = PollPolicy(initial=1, clock=clock, sleep=clock.sleep, jitter=0)
    job = await wait_for_job(client, job_id, policy=policy)
    assert job.status is JobStatus.FINISHED
    check_one_wait_with_one_throttle(recorded())


async def test_a_fan_out_records_the_same_names_and_each_end(
    service: FakeJobsService,
    client: JobsClient,
    clock: VirtualClock,
    recorded: Callable[[], Points],
) -> None:
    """`wait_for_jobs` records the same instruments, one end per job, by its last status and
    the error that ended it (a timeout)."""
    finished = service.add_job(duration=5)
    service.inject(HttpError(429, retry_after=1), job_id=finished)
    failed = service.add_job(duration=3, final_status=JobStatus.FAILED)
    endless = service.add_job(duration=math.inf)
    policy = PollPolicy(initial=1, clock=clock, sleep=clock.sleep, jitter=0)
    results = await wait_for_jobs(client, [finished, failed, endless], policy=policy, timeout=60)
    assert [result.ok for result in results] == [True, False, False]
    points = recorded()
    assert set(points) == NAMES
    assert points["jobpoll.waits.ended"] == Counter(
        {
            (("jobpoll.job.status", "FINISHED"),): 1,
            (("jobpoll.job.status", "FAILED"),): 1,
            (("error.type", "WaitTimeout"), ("jobpoll.job.status", "RUNNING")): 1,
        }
    )
    assert sum(points["jobpoll.wait.duration"].values()) == 3
    assert points["jobpoll.polls.throttled"] == Counter({(("http.response.status_code", 429),): 1})
    assert sum(points["jobpoll.polls.active"].values()) == 0


@pytest.fixture
async def real_time_service() -> AsyncIterator[FakeJobsService]:
    async with FakeJobsService() as fake:  # a SAQ worker's policy runs on the real clock
        yield fake


@pytest.mark.timeout(120)
async def test_a_saq_worker_records_the_same_names(
    redis_url: str, real_time_service: FakeJobsService, recorded: Callable[[], Points]
) -> None:
    """A SAQ worker (in this process, on a real Redis) records what a lone wait does."""
    pytest.importorskip("saq", reason="the saq extra is not installed")
    from saq import Worker
    from saq_worker import make_waits, record_outcome

    service = real_time_service
    waits = make_waits(redis_url, "m" + uuid.uuid4().hex[:8], poll_timeout=30.0)
    job_id = service.add_job(duration=1)
    service.inject(HttpError(429, retry_after=1), job_id=job_id)
    settings = waits.worker_settings(
        client=lambda: JobsClient(service.api_key, base_url=service.base_url),
        functions=[record_outcome],
        concurrency=4,
        timers={"schedule": 1, "sweep": 1, "abort": 1, "worker_info": 5},
    )
    worker = Worker(**settings)
    running = asyncio.ensure_future(worker.start())
    try:
        assert await waits.submit([job_id]) == [True]
        async with asyncio.timeout(60):
            result = await waits.result(job_id)
        assert result.ok
    finally:
        await worker.stop()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await waits.queue.disconnect()
    check_one_wait_with_one_throttle(recorded())


def test_without_the_extra_a_wait_records_nothing_and_loads_no_opentelemetry() -> None:
    """Without opentelemetry installed, waits run as ever, and nothing of it is imported."""
    code = """
import asyncio, sys
sys.modules["opentelemetry"] = None
from jobpoll import JobsClient, wait_for_job
from jobpoll.testing import FakeJobsService

async def main():
    async with FakeJobsService() as service, JobsClient(
        service.api_key, base_url=service.base_url
    ) as client:
        job = await wait_for_job(client, service.add_job(duration=0))
    print(job.status, [name for name in sys.modules if name.startswith("opentelemetry.")])

asyncio.run(main())
"""
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert ran.stdout.split("\n") == ["FINISHED []", ""]

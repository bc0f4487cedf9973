"""What the benchmark programs share (each runs as a script, with this folder on sys.path)."""

from __future__ import annotations

import argparse
import json
import math
import selectors
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from yarl import URL

from jobpoll import Job, JobsClient, PollPolicy, wait_for_job
from jobpoll.testing import FakeJobsService

SERVER_START_TIMEOUT = 20.0
SERVER_STOP_TIMEOUT = 5.0
LOOPBACK_HOST = "127.0.0.1"
#: The percentile the latency figures quote.
PERCENTILE = 0.95


class BenchmarkError(Exception):
    """Something broke: the service did not start, or an answer was wrong."""


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@dataclass
class Service:
    """Where the fake service listens, the key it accepts, and (once stopped) its counters."""

    base_url: str
    api_key: str
    counters: dict[str, int] = field(default_factory=dict)


@contextmanager
def fake_service(*, auto_create_duration: float, latency: float = 0.0) -> Iterator[Service]:
    """Run `python -m jobpoll.testing` in a child process; always stop it on the way out.

    Unknown job ids are answered with a job that runs for `auto_create_duration` seconds from
    its first poll; every answer waits `latency` seconds first. After the block,
    `service.counters` holds the service's own counts (`requests`, `peak_in_flight`).
    """
    command = [
        sys.executable,
        "-m",
        "jobpoll.testing",
        "--auto-create-duration",
        str(auto_create_duration),
        "--latency",
        str(latency),
    ]
    # A session of its own: Ctrl-C in a terminal interrupts the benchmark, which then stops
    # the service here, rather than the service stopping under a benchmark still running.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        service = _read_service_line(process)
        yield service
        process.terminate()
        assert process.stdout is not None
        last = process.stdout.readline()
        if last:
            service.counters = json.loads(last)
    finally:
        process.terminate()
        try:
            process.wait(timeout=SERVER_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def first_line(process: subprocess.Popen[str], what: str, timeout: float) -> str:
    """The first line a child process prints, waited for at most `timeout` seconds."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=timeout):
            raise BenchmarkError(f"{what} printed nothing in {timeout} s")
    line = process.stdout.readline()
    if not line:
        raise BenchmarkError(f"{what} exited (status {process.wait()}) before its first line")
    return line


def _read_service_line(process: subprocess.Popen[str]) -> Service:
    line = first_line(process, "the fake service", SERVER_START_TIMEOUT)
    try:
        announced = json.loads(line)
        service = Service(base_url=announced["base_url"], api_key=announced["api_key"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchmarkError(f"unexpected first line from the fake service: {line!r}") from exc
    if URL(service.base_url).host != LOOPBACK_HOST:
        raise BenchmarkError(f"the fake service is not on {LOOPBACK_HOST}: {service.base_url}")
    return service


def exit_status(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Wrap a benchmark's `main`: a `BenchmarkError` prints its message and exits 1, Ctrl-C 130."""

    def run(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except BenchmarkError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130

    return run


def exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    """Turn SIGTERM into SystemExit, so that the `finally` stopping the service runs."""
    raise SystemExit(128 + signum)


# Figures of the schedule benchmarks ------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One job waited for: its duration, how late its end was seen, and the polls it took."""

    duration: float
    latency: float
    polls: int


@dataclass(frozen=True)
class Row:
    """A schedule's figures over a list of jobs (a duration band, a shape, or all)."""

    jobs: int
    polls_mean: float
    latency_mean: float
    latency_p95: float
    share_p95: float

    @classmethod
    def of(cls, samples: Sequence[Sample]) -> Row:
        """The figures of a non-empty list of samples."""
        return cls(
            jobs=len(samples),
            polls_mean=statistics.fmean(s.polls for s in samples),
            latency_mean=statistics.fmean(s.latency for s in samples),
            latency_p95=percentile([s.latency for s in samples], PERCENTILE),
            share_p95=percentile([s.latency / s.duration for s in samples], PERCENTILE),
        )


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile: defined for any non-empty sample, even of one value."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


async def wait_and_check(
    service: FakeJobsService,
    client: JobsClient,
    job_id: str,
    policy: PollPolicy,
    clock: Callable[[], float],
) -> tuple[float, int]:
    """Wait for a job scripted on `service`; return when its end was seen (on `clock`) and how
    many polls the wait sent, after checking that it finished, was seen ended once, and that
    the service received every poll."""
    seen_at: list[float] = []

    def record(job: Job) -> None:
        if job.is_terminal:
            seen_at.append(clock())

    wait = wait_for_job(client, job_id, policy=policy, on_update=record)
    job = await wait
    if not job.succeeded or len(seen_at) != 1:
        raise BenchmarkError(f"job {job_id}: ended {job.raw_status}, seen ended {seen_at}")
    if wait.polls != service.request_count(job_id):
        raise BenchmarkError(
            f"job {job_id}: {wait.polls} polls sent, {service.request_count(job_id)} received"
        )
    return seen_at[0], wait.polls

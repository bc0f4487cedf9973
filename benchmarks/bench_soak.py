"""Soak: thousands of jobs through `wait_for_jobs` against a hostile fake service, cancelled
and resumed at random moments; nothing may be lost, wrong, escaped or left behind.

Run from the repository root:

    .venv/bin/python benchmarks/bench_soak.py                            # CI size, ~30 s
    .venv/bin/python benchmarks/bench_soak.py --jobs 30000 --batch 3000  # full size
        [--seed 1] [--fault-rate 0.5] [--cancels 20] [--skip KIND ...]

The jobs run in batches of `--batch`: one `wait_for_jobs` fan-out per batch, one batch after
another, all through one `JobsClient`. Each job's outcome is known in advance: it FINISHES or
is ARCHIVED (a result with no error), ends FAILED or DIED (a `JobFailedError` carrying that
status), or never existed (a `NotFound`). Every fault is one a later poll cures, and the
policy rides out up to 1000 failures in a row, so the expected outcome is exact: an outcome
is *wrong* when it is anything else (a transient error that exhausted `max_failures`, a
`WaitTimeout`, another status, another error class).

Faults, drawn from a seeded `random.Random`: each job's first `--script` polls are each a
fault with probability `--fault-rate` (else a normal answer), of these kinds (`--skip` one to
leave it out):

- `throttle`: 429 or 503, without `Retry-After`, with seconds, or with an HTTP-date;
- `burst`: while a batch runs, bursts of 10 to 80 throttled answers for any job;
- `odd-header`: 429/503 and normal answers with `Retry-After`/`Date` of the last day of the
  calendar, before it, `1e400`, `-5`, `nan`, `1e23`, garbage, and a 10 KB header;
- `extreme-date`: a `Retry-After` or `Date` with a year far outside the calendar;
- `drop`: the connection closed before the answer, or half-way through the body;
- `slow`: an answer slower than the client's `total_timeout` (kept small, so this is quick);
- `bad-body`: a proxy's HTML page (200 and 502), a truncated JSON body;
- `weird-status`: a status jobpoll does not know (`WEIRD`);
- `progress-back`: progress that goes back.

Cancellations (`--cancels` per batch at most, at random moments, each followed by resuming
the same `JobsWait` in a new task), of these kinds: `cancel` (once), `cancel-during-cleanup`
(a second cancellation while the iteration still cleans up after the first, as a worker is
stopped by SIGTERM then a harder stop) and `cancel-in-update` (while the async `on_update`
is awaited); the last two combine too.

The fake service runs in this process (`FakeJobsService`), not in a second one as in
bench_fanout.py: the soak scripts each job's faults with `inject` and reads back the
service's own counters (`request_count`, `in_flight`, `peak_in_flight`), which only the
embedded service offers, and CPU time is not what is measured here. Tasks, connections and
file descriptors are counted with the service stopped, so its own are not mistaken for
leaks. Only loopback is used; every loop is bounded in count and in time.

Printed: jobs submitted; outcomes received (each distinct id exactly once; must equal the
jobs submitted: an id missing is "lost silently" when the iteration ended by itself without
it, "cut off by a failure" when an escaped error or a hang ended the fan-out); outcomes
wrong (must be 0); errors escaped from the iteration (anything but the expected
`CancelledError`: must be 0; its type, message and origin are printed); cancellations
swallowed; requests; peak in flight (client, against the bound; and at the service);
requests left in flight after each fan-out closed, asyncio tasks, client connections and
file descriptors left after the run (must be 0); event loop errors and warnings (must be
0); peak memory (must stay under `--max-memory-mb`). The exit status is 1 when any check
fails, 0 when all pass.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import gc
import os
import random
import resource
import signal
import sys
import time
import traceback
import uuid
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from _common import exit_on_sigterm, exit_status, positive_int

from jobpoll import (
    Job,
    JobFailedError,
    JobResult,
    JobsClient,
    JobsWait,
    NotFound,
    PollPolicy,
    wait_for_jobs,
)
from jobpoll.testing import (
    Body,
    Drop,
    FakeJobsService,
    Fault,
    Headers,
    HttpError,
    Patch,
    Slow,
)

#: Each request's budget: small, so that answers slower than it (`Slow`) cost little time.
REQUEST_TIMEOUT = 0.5
SLOW_ANSWER = 2 * REQUEST_TIMEOUT
#: Short and fast polling, riding out any number of transient failures the soak can script.
POLICY_OPTIONS: dict[str, Any] = {
    "initial": 0.05,
    "max_interval": 0.25,
    "max_lateness": 0.25,
    "max_retry_after": 0.1,
    "max_failures": 1000,
}
#: Job durations (seconds, real time), drawn uniformly.
DURATIONS = (0.5, 4.0)
#: What each job is scripted to do, with its weight.
OUTCOMES = {"FINISHED": 60, "ARCHIVED": 5, "FAILED": 15, "DIED": 5, "missing": 15}
#: The seconds between two cancellations of the iterating task, drawn uniformly.
CANCEL_EVERY = (0.1, 0.6)
#: The chance, between two cancellations, that a burst of throttled answers begins, and how
#: long it lasts (seconds, drawn uniformly).
BURST_CHANCE = 0.1
BURST_SECONDS = (0.05, 0.3)
#: How long a cancelled iteration may take to end.
CANCEL_TIMEOUT = 10.0
#: How long a cancellation aimed at `on_update` waits for one to begin (else none is made).
UPDATE_WAIT = 1.0
#: How long to wait for counters to settle (a closed connection reaches the service's
#: handler, a closed socket its file descriptor) before judging.
SETTLE = 2.0
#: Beyond the fan-out's own `timeout`, how long a batch may run before it is declared hung.
HANG_GRACE = 15.0

ODD_VALUES = (
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Mon, 01 Jan 0001 00:00:00 +0100",
    "1e400",
    "-5",
    "nan",
    "99999999999999999999999",
    "soon, maybe",
    "",
)
EXTREME_DATES = (
    "Fri, 31 Dec 99999999999999999999 23:59:59 GMT",
    "Fri, 99999999999999999999 Dec 2030 23:59:59 GMT",
    "Fri, 31 Dec 2030 23:59:59 +99999999999999999999",
)
#: The kinds of fault a job's poll may draw, with their weights. A 429 (or a 503 after
#: another) cuts the client's rate for every job, so the throttles are rarer than the rest.
FAULT_WEIGHTS = {
    "throttle": 1,
    "odd-header": 4,
    "extreme-date": 1,
    "drop": 4,
    "slow": 2,
    "bad-body": 4,
    "weird-status": 4,
    "progress-back": 4,
}
FAULT_KINDS = tuple(FAULT_WEIGHTS)
#: Error statuses that carry odd headers: most are transient without pausing the fleet.
ODD_STATUSES = (500, 502, 504, 408)
CANCEL_KINDS = ("cancel", "cancel-during-cleanup", "cancel-in-update")
KINDS = (*FAULT_KINDS, "burst", *CANCEL_KINDS)


# Faults --------------------------------------------------------------------------------------


def throttle(rng: random.Random) -> HttpError:
    status = rng.choice((429, 503))
    how = rng.randrange(3)
    if how == 0:
        return HttpError(status)
    if how == 1:
        return HttpError(status, retry_after=round(rng.uniform(0.01, 0.2), 3))
    return HttpError(status, retry_after=1, as_date=True)  # an HTTP-date: whole seconds


def odd_header(rng: random.Random) -> Fault:
    value = rng.choice(ODD_VALUES)
    headers = rng.choice(
        (
            {"Retry-After": value},
            {"Retry-After": "Wed, 01 Jan 2031 00:00:00 GMT", "Date": value},
            {"Retry-After": value, "Date": value},
            {"X-Padding": "x" * 10_000},  # past aiohttp's limit on a header line
        )
    )
    if rng.random() < 0.5:
        return Headers(headers)
    return HttpError(rng.choice(ODD_STATUSES), headers=headers)


def extreme_date(rng: random.Random) -> Fault:
    value = rng.choice(EXTREME_DATES)
    headers = rng.choice(
        ({"Retry-After": value}, {"Retry-After": "Wed, 01 Jan 2031 00:00:00 GMT", "Date": value})
    )
    return HttpError(rng.choice(ODD_STATUSES), headers=headers)


def bad_body(rng: random.Random) -> Body:
    return rng.choice(
        (
            Body("<html><body>Bad gateway</body></html>", content_type="text/html"),
            Body("<html><body>Bad gateway</body></html>", status=502, content_type="text/html"),
            Body('{"id": "', status=200),
        )
    )


FAULT_MAKERS: dict[str, Callable[[random.Random], Fault]] = {
    "throttle": throttle,
    "odd-header": odd_header,
    "extreme-date": extreme_date,
    "drop": lambda rng: Drop(mid_body=rng.random() < 0.5),
    "slow": lambda _rng: Slow(SLOW_ANSWER),
    "bad-body": bad_body,
    "weird-status": lambda _rng: Patch({"status": "WEIRD"}),
    "progress-back": lambda rng: Patch({"progress": rng.randrange(0, 5)}),
}
#: A poll without a fault: the job as it is.
NO_FAULT = Patch({})


# One batch -----------------------------------------------------------------------------------


class Step(enum.Enum):
    """What follows a cancellation: the batch is over, the iteration resumes in a new task,
    or (no cancellation was made) the same task goes on."""

    OVER = "over"
    RESUME = "resume"
    GO_ON = "go on"


@dataclass
class Expected:
    """What a job is scripted to end as: a final status, or "missing" (never existed)."""

    outcome: str

    def judge(self, result: JobResult) -> str | None:
        """None when the result is the one scripted, else what is wrong with it."""
        error, job = result.error, result.job
        if self.outcome == "missing":
            if type(error) is NotFound:
                return None
        elif self.outcome in ("FINISHED", "ARCHIVED"):
            if error is None and job is not None and job.raw_status == self.outcome:
                return None
        elif isinstance(error, JobFailedError) and error.job.raw_status == self.outcome:
            return None
        got = "ok" if error is None else f"{type(error).__name__}: {error}"
        seen = "never seen" if job is None else f"last seen {job.raw_status} {job.progress}%"
        return f"expected {self.outcome}, got {got} ({seen})"


@dataclass
class Tally:
    """What the soak saw, over all batches."""

    submitted: int = 0
    received: int = 0
    lost: int = 0
    abandoned: int = 0
    duplicated: int = 0
    unexpected: int = 0
    wrong: list[str] = field(default_factory=list)
    wrong_kinds: Counter[str] = field(default_factory=Counter)
    escaped: list[str] = field(default_factory=list)
    swallowed: int = 0
    hung: list[str] = field(default_factory=list)
    cancels: Counter[str] = field(default_factory=Counter)
    polls: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    updates: int = 0
    peak_in_flight: int = 0
    left_in_flight: list[str] = field(default_factory=list)
    batches_failed: list[int] = field(default_factory=list)


class Batch:
    """One fan-out over `size` scripted jobs, cancelled and resumed at random moments."""

    def __init__(
        self,
        number: int,
        size: int,
        arguments: argparse.Namespace,
        service: FakeJobsService,
        client: JobsClient,
        tally: Tally,
    ) -> None:
        self.number = number
        self.arguments = arguments
        self.service = service
        self.client = client
        self.tally = tally
        seed = arguments.seed
        self.script_rng = random.Random(f"{seed}:{number}:script")
        self.chaos_rng = random.Random(f"{seed}:{number}:chaos")
        self.policy = PollPolicy(
            **POLICY_OPTIONS, rng=random.Random(f"{seed}:{number}:jitter").random
        )
        self.expected: dict[str, Expected] = {}
        #: The kind of fault each job's first polls are answered with ("": none).
        self.scripts: dict[str, list[str]] = {}
        self.seen: Counter[str] = Counter()
        self.update_wanted = False
        self.in_update = asyncio.Event()
        #: Whether the iteration ended by itself (StopAsyncIteration): then every id not
        #: reported was lost silently.
        self.ended = False
        self.script(size)
        self.fanout: JobsWait = wait_for_jobs(
            client,
            list(self.expected),
            policy=self.policy,
            timeout=arguments.batch_timeout,
            on_update=self.on_update,
        )

    def script(self, size: int) -> None:
        """Script every job of the batch and the faults of its first polls."""
        rng, service, skip = self.script_rng, self.service, set(self.arguments.skip)
        kinds = [kind for kind in FAULT_KINDS if kind not in skip]
        weights = [FAULT_WEIGHTS[kind] for kind in kinds]
        outcomes, outcome_weights = list(OUTCOMES), list(OUTCOMES.values())
        for _ in range(size):
            outcome = rng.choices(outcomes, outcome_weights)[0]
            job_id = str(uuid.uuid4())
            if outcome != "missing":
                service.add_job(
                    job_id,
                    duration=rng.uniform(*DURATIONS),
                    final_status=outcome,
                    queued=rng.choice((0.0, 0.05)),
                )
            self.expected[job_id] = Expected(outcome)
            if not kinds:
                continue
            script = self.scripts[job_id] = []
            for _ in range(self.arguments.script):
                if rng.random() < self.arguments.fault_rate:
                    kind = rng.choices(kinds, weights)[0]
                    fault = FAULT_MAKERS[kind](rng)
                else:
                    kind, fault = "", NO_FAULT
                script.append(kind)
                service.inject(fault, job_id=job_id)

    async def on_update(self, job: Job) -> None:
        """An async `on_update`: it suspends, and lingers while a cancellation aims at it."""
        self.tally.updates += 1
        self.tally.peak_in_flight = max(self.tally.peak_in_flight, self.fanout.in_flight)
        if self.update_wanted:
            self.update_wanted = False
            self.in_update.set()
            await asyncio.sleep(0.05)  # the cancellation lands here
        else:
            await asyncio.sleep(0)

    async def consume(self) -> None:
        """Iterate the fan-out, taking in each result."""
        async for result in self.fanout:
            self.seen[result.job_id] += 1
            self.tally.peak_in_flight = max(self.tally.peak_in_flight, self.fanout.in_flight)
            expected = self.expected.get(result.job_id)
            if expected is None:
                continue  # counted as unexpected at the end
            wrong = expected.judge(result)
            if wrong is not None:
                self.tally.wrong.append(f"batch {self.number}, job {result.job_id}: {wrong}")
                kind = "ok" if result.error is None else type(result.error).__name__
                self.tally.wrong_kinds[f"expected {expected.outcome}, got {kind}"] += 1

    async def run(self) -> None:
        """Iterate to the end, cancelling and resuming at random; then judge and clean up."""
        started = time.monotonic()
        try:
            await self.drive()
        finally:
            await self.fanout.aclose()
        await self.judge(time.monotonic() - started)
        for job_id, expected in self.expected.items():
            if expected.outcome != "missing":
                self.service.remove_job(job_id)
        self.service.clear_faults()

    async def drive(self) -> None:
        rng, tally = self.chaos_rng, self.tally
        skip = set(self.arguments.skip)
        modes = [kind for kind in CANCEL_KINDS if kind not in skip]
        cancels_left = self.arguments.cancels if modes else 0
        burst = "burst" not in skip
        hang_at = time.monotonic() + self.arguments.batch_timeout + HANG_GRACE
        consumer = asyncio.ensure_future(self.consume())
        try:
            while True:
                pause = rng.uniform(*CANCEL_EVERY)
                await asyncio.wait({consumer}, timeout=pause)
                if consumer.done():
                    self.take_end(consumer, cancelled=False)
                    return
                if time.monotonic() > hang_at:
                    tally.hung.append(
                        f"batch {self.number}: still iterating after"
                        f" {self.arguments.batch_timeout + HANG_GRACE:g} s"
                        f" ({self.fanout!r})"
                    )
                    return
                if burst and rng.random() < BURST_CHANCE:
                    # An outage of a set length: every request in it is throttled.
                    seconds = rng.uniform(*BURST_SECONDS)
                    self.service.inject(throttle(rng), times=None, seconds=seconds)
                if cancels_left == 0:
                    continue
                cancels_left -= 1
                step = await self.cancel(consumer, rng.choice(modes), rng)
                if step is Step.OVER:
                    return
                if step is Step.RESUME:  # in a new task, the same JobsWait
                    consumer = asyncio.ensure_future(self.consume())
        finally:
            if not consumer.done():
                consumer.cancel()
                await asyncio.wait({consumer}, timeout=CANCEL_TIMEOUT)

    async def cancel(self, consumer: asyncio.Future[None], mode: str, rng: random.Random) -> Step:
        """Cancel the iterating task as `mode` says."""
        in_update = mode == "cancel-in-update"
        twice = mode == "cancel-during-cleanup" or (in_update and rng.random() < 0.5)
        if in_update:
            self.in_update.clear()
            self.update_wanted = True
            entered: asyncio.Future[Any] = asyncio.ensure_future(self.in_update.wait())
            await asyncio.wait({entered, consumer}, timeout=UPDATE_WAIT)
            entered.cancel()
            self.update_wanted = False
            if consumer.done():
                self.take_end(consumer, cancelled=False)
                return Step.OVER
            if not self.in_update.is_set():
                return Step.GO_ON  # no update came in time: no cancellation this time
        landed = consumer.cancel()
        label = "in on_update" if in_update else "once"
        if twice:
            for _ in range(rng.randint(1, 3)):
                await asyncio.sleep(0)  # the first cancellation's cleanup begins
            if not consumer.done() and consumer.cancel():
                label += ", again during its cleanup"
        self.tally.cancels[label] += landed
        await asyncio.wait({consumer}, timeout=CANCEL_TIMEOUT)
        if not consumer.done():
            self.tally.hung.append(
                f"batch {self.number}: a cancelled iteration ({mode}) did not end within"
                f" {CANCEL_TIMEOUT:g} s"
            )
            return Step.OVER
        return Step.OVER if self.take_end(consumer, cancelled=landed) else Step.RESUME

    def take_end(self, consumer: asyncio.Future[None], *, cancelled: bool) -> bool:
        """Judge how an iterating task ended; True when the batch is over."""
        if consumer.cancelled():
            return False
        error = consumer.exception()
        if error is not None:
            self.tally.escaped.append(
                f"batch {self.number}: {type(error).__name__}: {error}"
                f" (raised {origin(error)}; after {self.fanout.reported} results)"
            )
            return True
        if cancelled:
            self.tally.swallowed += 1
        self.ended = True
        return True

    async def judge(self, seconds: float) -> None:
        tally, seen, fanout = self.tally, self.seen, self.fanout
        received = sum(1 for job_id in self.expected if seen[job_id] >= 1)
        duplicated = sum(1 for job_id in self.expected if seen[job_id] > 1)
        unexpected = sum(1 for job_id in seen if job_id not in self.expected)
        unreported = len(self.expected) - received
        lost = unreported if self.ended else 0
        tally.abandoned += unreported - lost
        tally.submitted += len(self.expected)
        tally.received += received
        tally.lost += lost
        tally.duplicated += duplicated
        tally.unexpected += unexpected
        tally.polls += fanout.polls
        for job_id, script in self.scripts.items():
            # A job's own faults answer its first requests, in order.
            answered = script[: self.service.request_count(job_id)]
            tally.faults.update(kind for kind in answered if kind)
        left = await settle(lambda: self.service.in_flight == 0)
        if fanout.in_flight or not left:
            tally.left_in_flight.append(
                f"batch {self.number}: {fanout.in_flight} polls in the fan-out,"
                f" {self.service.in_flight} requests at the service"
            )
        print(
            f"  batch {self.number}: {len(self.expected)} jobs, {received} reported"
            f" ({unreported} not reported, {duplicated} twice; the iteration"
            f" {'ended by itself' if self.ended else 'was ended by a failure'}),"
            f" reported {fanout.reported} of"
            f" {fanout.total}, {fanout.polls} polls, {seconds:.1f} s",
            flush=True,
        )
        if unreported or duplicated or unexpected:
            tally.batches_failed.append(self.number)


def origin(error: BaseException) -> str:
    """Where an error was raised, and the last place in jobpoll it went through."""
    frames = traceback.extract_tb(error.__traceback__)
    where = [f"at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name}"]
    ours = [frame for frame in frames if f"{os.sep}jobpoll{os.sep}" in frame.filename]
    if ours and ours[-1] is not frames[-1]:
        frame = ours[-1]
        where.append(
            f"from jobpoll/{os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}"
        )
    return ", ".join(where)


# Leftovers -------------------------------------------------------------------------------------


async def settle(condition: Callable[[], bool]) -> bool:
    """Whether `condition()` holds within `SETTLE` seconds (polled every 10 ms)."""
    deadline = time.monotonic() + SETTLE
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def open_fds() -> dict[str, str]:
    """This process's file descriptors and what each is (Linux: /proc/self/fd)."""
    fds = {}
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                fds[name] = os.readlink(f"/proc/self/fd/{name}")
    return fds


def socket_inodes_to(port: int) -> set[str]:
    """Inodes of TCP sockets whose remote end is `port` on loopback (/proc/net/tcp)."""
    inodes = set()
    with contextlib.suppress(OSError), open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            remote, inode = fields[2], fields[9]
            if int(remote.split(":")[1], 16) == port and inode != "0":
                inodes.add(inode)
    return inodes


def client_connections(port: int) -> list[str]:
    """The sockets this process holds to the service's port."""
    inodes = socket_inodes_to(port)
    return [
        f"fd {fd}: {target}"
        for fd, target in open_fds().items()
        if target.startswith("socket:[") and target[8:-1] in inodes
    ]


def other_tasks() -> list[str]:
    current = asyncio.current_task()
    return [repr(task) for task in asyncio.all_tasks() if task is not current]


def peak_memory_mb() -> float:
    """The process's peak resident memory, in MB (`ru_maxrss` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# The run -----------------------------------------------------------------------------------------


@dataclass
class Leftovers:
    """What the run left behind, and the service's own counters."""

    tasks: list[str] = field(default_factory=list)
    connections: list[str] = field(default_factory=list)
    fds: list[str] = field(default_factory=list)
    requests: int = 0
    service_peak: int = 0
    bound: int = 0
    loop_errors: list[str] = field(default_factory=list)


async def soak(arguments: argparse.Namespace, tally: Tally) -> Leftovers:
    leftovers = Leftovers()
    loop = asyncio.get_running_loop()

    def record(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        leftovers.loop_errors.append(str(context.get("message", context)))

    loop.set_exception_handler(record)
    fds_before = open_fds()
    service = FakeJobsService()
    await service.start()
    port = int(service.base_url.split(":")[2].split("/")[0])
    client = JobsClient(
        service.api_key,
        base_url=service.base_url,
        connect_timeout=REQUEST_TIMEOUT,
        total_timeout=REQUEST_TIMEOUT,
    )
    leftovers.bound = client.pool_size  # the default max_in_flight
    try:
        async with client:
            remaining, number = arguments.jobs, 0
            while remaining > 0:
                number += 1
                size = min(arguments.batch, remaining)
                remaining -= size
                await Batch(number, size, arguments, service, client, tally).run()
                gc.collect()
        await settle(lambda: not client_connections(port))
        leftovers.connections = client_connections(port)
    finally:
        leftovers.requests = service.request_count()
        leftovers.service_peak = service.peak_in_flight
        await service.stop()
    gc.collect()
    await settle(lambda: not other_tasks())
    leftovers.tasks = other_tasks()
    await settle(lambda: len(open_fds()) <= len(fds_before))
    fds_after = open_fds()
    leftovers.fds = [
        f"fd {fd}: {target}" for fd, target in fds_after.items() if fd not in fds_before
    ]
    return leftovers


def check(name: str, value: object, ok: bool, must: str, failures: list[str]) -> None:
    print(f"{name + ':':<34}{value} ({must}){'' if ok else '  FAIL'}")
    if not ok:
        failures.append(name)


def show(lines: list[str], limit: int = 5) -> None:
    for line in lines[:limit]:
        print(f"    {line}")
    if len(lines) > limit:
        print(f"    ... and {len(lines) - limit} more")


def arguments_of(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--jobs", type=positive_int, default=3000, help="jobs in all (3000)")
    parser.add_argument("--batch", type=positive_int, default=1000, help="jobs per fan-out (1000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of every random draw (1)")
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.5,
        help="the share of each job's first polls answered with a fault (0.5)",
    )
    parser.add_argument(
        "--script",
        type=int,
        default=12,
        metavar="POLLS",
        help="how many of each job's first polls may draw a fault (12)",
    )
    parser.add_argument(
        "--cancels",
        type=int,
        default=20,
        help="cancellations of the iterating task per batch, at most (20)",
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=KINDS,
        metavar="KIND",
        help=f"leave out a kind of fault or cancellation (repeatable): {', '.join(KINDS)}",
    )
    parser.add_argument(
        "--batch-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="each fan-out's timeout= (60); a batch still running 15 s later is hung",
    )
    parser.add_argument(
        "--max-memory-mb",
        type=float,
        default=1024.0,
        help="the peak resident memory allowed, in MB (1024)",
    )
    arguments = parser.parse_args(argv)
    if not 0 <= arguments.fault_rate <= 1:
        parser.error("--fault-rate must be between 0 and 1")
    if arguments.script < 0 or arguments.cancels < 0:
        parser.error("--script and --cancels must be 0 or more")
    return arguments


@exit_status
def main(argv: list[str] | None = None) -> int:
    arguments = arguments_of(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    skipped = ", ".join(arguments.skip) or "none"
    print(
        f"soak: {arguments.jobs} jobs in fan-outs of {arguments.batch}, seed {arguments.seed},"
        f" faults on {arguments.fault_rate:.0%} of each job's first {arguments.script} polls,"
        f" at most {arguments.cancels} cancellations per fan-out; left out: {skipped}",
        flush=True,
    )
    tally = Tally()
    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        leftovers = asyncio.run(soak(arguments, tally))
        gc.collect()
    seconds = time.monotonic() - started
    failures: list[str] = []
    print(f"{'jobs submitted:':<34}{tally.submitted}")
    check(
        "outcomes received",
        tally.received,
        tally.received == tally.submitted and not (tally.duplicated or tally.unexpected),
        f"must be {tally.submitted}, each id once: {tally.lost} lost silently,"
        f" {tally.abandoned} cut off by a failure, {tally.duplicated} twice,"
        f" {tally.unexpected} unknown",
        failures,
    )
    check("outcomes wrong", len(tally.wrong), not tally.wrong, "must be 0", failures)
    for kind, count in tally.wrong_kinds.most_common():
        print(f"    {count} x {kind}")
    show(tally.wrong, 3)
    check("errors escaped", len(tally.escaped), not tally.escaped, "must be 0", failures)
    show(tally.escaped)
    check("cancellations swallowed", tally.swallowed, not tally.swallowed, "must be 0", failures)
    check("iterations hung", len(tally.hung), not tally.hung, "must be 0", failures)
    show(tally.hung)
    cancels = ", ".join(f"{count} {kind}" for kind, count in sorted(tally.cancels.items()))
    print(f"{'cancellations:':<34}{cancels or 'none'}")
    per_job = tally.polls / tally.submitted if tally.submitted else 0.0
    print(
        f"{'requests:':<34}{leftovers.requests} received, {tally.polls} polls sent"
        f" ({per_job:.1f} per job)"
    )
    faults = ", ".join(f"{count} {kind}" for kind, count in sorted(tally.faults.items()))
    print(f"{'faults answered:':<34}{sum(tally.faults.values())} ({faults or 'none'}; and bursts)")
    print(f"{'on_update calls:':<34}{tally.updates}")
    bound = leftovers.bound
    check(
        "peak in flight",
        f"{tally.peak_in_flight} (client); {leftovers.service_peak} at the service",
        tally.peak_in_flight <= bound,
        f"client at most {bound}; the service also counts handlers whose client left",
        failures,
    )
    check(
        "requests left in flight",
        len(tally.left_in_flight),
        not tally.left_in_flight,
        "after each fan-out closed; must be 0",
        failures,
    )
    show(tally.left_in_flight)
    check("asyncio tasks left", len(leftovers.tasks), not leftovers.tasks, "must be 0", failures)
    show(leftovers.tasks)
    check(
        "client connections left open",
        len(leftovers.connections),
        not leftovers.connections,
        "after the client closed; must be 0",
        failures,
    )
    show(leftovers.connections)
    check("file descriptors left", len(leftovers.fds), not leftovers.fds, "must be 0", failures)
    show(leftovers.fds)
    check(
        "event loop errors",
        len(leftovers.loop_errors),
        not leftovers.loop_errors,
        "must be 0",
        failures,
    )
    show(leftovers.loop_errors)
    messages = [f"{w.category.__name__}: {w.message}" for w in caught]
    check("warnings", len(messages), not messages, "must be 0", failures)
    show(messages)
    memory = peak_memory_mb()
    check(
        "peak memory",
        f"{memory:.0f} MB resident",
        memory <= arguments.max_memory_mb,
        f"must be at most {arguments.max_memory_mb:g} MB",
        failures,
    )
    print(f"{'time:':<34}{seconds:.1f} s")
    if failures:
        print(f"verdict: FAIL ({', '.join(failures)})")
        return 1
    print("verdict: pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())

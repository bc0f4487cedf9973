"""A fan-out's per-job state is lean: plain numbers, shared strings and one untracked record
per job, no per-job generator, coroutine, task or object the collector walks; and its set-up
yields to the event loop. Counted, never timed."""

from __future__ import annotations

import asyncio
import gc
import itertools
import random
import types

import pytest

from jobpoll import Job, JobsClient, JobStatus, JobsWait, PollPolicy, wait_for_jobs
from jobpoll._intake import SLICE
from jobpoll.testing import FakeJobsService, Slow, VirtualClock
from tests.support import until

JOBS = 3 * SLICE


@pytest.fixture
def policy(clock: VirtualClock) -> PollPolicy:
    """The default policy in virtual time, with a seeded jitter."""
    return PollPolicy(clock=clock, sleep=clock.sleep, rng=random.Random(5).random)


def held_for_jobs(fanout: JobsWait) -> list[object]:
    """Every object the fan-out's table of jobs and queue hold, not counting what all jobs
    share: classes, modules, functions (the code that loads a row) and the statuses.

    It reads the fan-out's internals on purpose: what it measures is the memory of their
    rows, which no public name exposes."""
    shared = (type, types.ModuleType, types.FunctionType, JobStatus)
    seen = {id(fanout._jobs.rules.policy)}
    todo: list[object] = [fanout._jobs.table, fanout._jobs.queue]
    held = []
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        held.append(item)
        if not isinstance(item, shared):
            todo.extend(gc.get_referents(item))
    return held


async def waiting(client: JobsClient, service: FakeJobsService, jobs: int) -> list[object]:
    """What a fan-out holds for `jobs` jobs once each has been polled and waits."""
    ids = [service.add_job(duration=36_000) for _ in range(jobs)]
    seen: set[str] = set()
    everyone_seen = asyncio.Event()

    def record(job: Job) -> None:
        seen.add(job.id)
        if len(seen) == jobs:
            everyone_seen.set()

    # Real time, and a first delay no test run reaches: every job waits once polled.
    policy = PollPolicy(initial=600, max_interval=600)
    fanout = wait_for_jobs(client, ids, policy=policy, on_update=record)
    async with fanout:
        iterating = asyncio.ensure_future(anext(fanout))
        async with asyncio.timeout(120):  # generous: a loaded machine, never a timing
            await everyone_seen.wait()
            while fanout.in_flight:  # noqa: ASYNC110 - the last answers are being taken in
                await asyncio.sleep(0.01)
        gc.collect()  # tuples of plain values are untracked at their first collection
        held = held_for_jobs(fanout)
        iterating.cancel()
        with pytest.raises(asyncio.CancelledError):
            await iterating
    return held


async def test_waiting_jobs_hold_no_generator_coroutine_or_walked_object(
    client: JobsClient, service: FakeJobsService
) -> None:
    """What a fan-out holds for its waiting jobs has no generator, coroutine or task, and
    as many objects the garbage collector walks for 3000 jobs as for 1000: none per job."""
    few = await waiting(client, service, JOBS // 3)
    many = await waiting(client, service, JOBS)
    for held in (few, many):
        kinds = {type(item) for item in held}
        assert not kinds & {
            types.GeneratorType,
            types.CoroutineType,
            types.AsyncGeneratorType,
            asyncio.Task,
            asyncio.Future,
        }
    walked_few = [item for item in few if gc.is_tracked(item)]
    walked_many = [item for item in many if gc.is_tracked(item)]
    assert len(walked_many) == len(walked_few), sorted(
        {type(item).__name__ for item in walked_many}
    )
    assert len(many) - len(few) >= JOBS - JOBS // 3  # the jobs are there: ids, snapshots...


async def test_jobs_taken_in_add_no_walked_object_per_job(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """Taking in thousands of jobs adds a bounded number of objects the collector walks,
    not one or more per job."""
    service.inject(Slow(60))  # the one poll allowed is held: nothing more is sent or reported
    fanout = wait_for_jobs(client, ["first"], policy=policy, max_in_flight=1)
    async with fanout:
        iterating = asyncio.ensure_future(anext(fanout))
        await until(lambda: fanout.in_flight == 1 and service.in_flight == 1)
        gc.collect()
        before = len(gc.get_objects())
        fanout.add([f"job-{i}" for i in range(JOBS)])
        await until(lambda: len(fanout.time_left()) == 1 + JOBS)  # every job set up
        gc.collect()
        grown = len(gc.get_objects()) - before
        iterating.cancel()
        with pytest.raises(asyncio.CancelledError):
            await iterating
    assert grown < 100


async def test_set_up_yields_to_the_loop_between_slices(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """A task beside a fan-out of many ids runs between the slices of its set-up, not only
    after all are set up: the set-up never holds the loop for all jobs at once."""
    service.inject(Slow(60))  # the one poll allowed is held: every job set up stays waiting
    ids = [f"job-{i}" for i in range(JOBS)]
    fanout = wait_for_jobs(client, ids, policy=policy, max_in_flight=1)
    taken_when_beside_ran: list[int] = []

    async def beside() -> None:
        while not taken_when_beside_ran or taken_when_beside_ran[-1] < JOBS:
            taken_when_beside_ran.append(len(fanout.time_left()))
            await asyncio.sleep(0)

    async with fanout:
        watcher = asyncio.create_task(beside())
        iterating = asyncio.ensure_future(anext(fanout))
        await watcher
        iterating.cancel()
        with pytest.raises(asyncio.CancelledError):
            await iterating
    steps = sorted(set(taken_when_beside_ran))
    assert steps[-1] == JOBS
    assert all(later - earlier <= SLICE for earlier, later in itertools.pairwise(steps))


async def test_counts_of_hundreds_of_polls_are_kept(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """Jobs polled hundreds of times end as they would alone, every poll counted."""
    ids = [service.add_job(duration=300 + i) for i in range(3)]
    policy = PollPolicy(
        initial=1, max_interval=1, jitter=0, progress_aware=False, clock=clock, sleep=clock.sleep
    )
    fanout = wait_for_jobs(client, ids, policy=policy)
    results = await fanout
    assert all(result.ok for result in results)
    assert fanout.polls == service.request_count() > 3 * 300

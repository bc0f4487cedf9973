"""A running fan-out takes new ids: from an async iterable, and through `JobsWait.add()`,
each polled once and reported once, set up a slice at a time."""

from __future__ import annotations

import asyncio
import collections
import gc
import random
import uuid
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support import no_other_tasks, until

from jobpoll import (
    InvalidJobId,
    JobResult,
    JobsClient,
    JobsWait,
    NotFound,
    PollPolicy,
    wait_for_jobs,
)
from jobpoll._ids import check_job_id
from jobpoll._intake import BACKLOG, SLICE
from jobpoll.testing import FakeJobsService, Slow, VirtualClock


@pytest.fixture
def policy(clock: VirtualClock) -> PollPolicy:
    """The default policy in virtual time, with a seeded jitter."""
    return PollPolicy(clock=clock, sleep=clock.sleep, rng=random.Random(5).random)


def counts(results: list[JobResult]) -> dict[str, int]:
    return dict(collections.Counter(result.job_id for result in results))


def sets_holding(job_id: str) -> int:
    """How many sets alive hold the id: what a fan-out spends on dropping repeats."""
    gc.collect()
    return sum(1 for item in gc.get_objects() if type(item) is set and job_id in item)


async def test_async_generator_source(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """A fan-out fed from an async generator reports every distinct id once, duplicates
    across the source included, and ends once the source is exhausted."""
    ids = [service.add_job(duration=i * 7) for i in range(30)]

    async def source() -> AsyncIterator[str | uuid.UUID]:
        for job_id in ids:
            yield job_id
            await asyncio.sleep(0)
        yield uuid.UUID(ids[0])  # the same job again, as a UUID
        yield ids[5]

    fanout = wait_for_jobs(client, source(), policy=policy)
    results = await fanout
    assert [result.job_id for result in results] == ids  # in the order the source gave them
    assert all(result.ok for result in results)
    assert fanout.total == 30
    assert service.request_count() == sum(service.request_count(job_id) for job_id in ids)


async def test_source_waits_for_ids_that_come_later(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """While the source is open, a fan-out whose jobs are all reported waits for more."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def source() -> AsyncIterator[str]:
        while (job_id := await queue.get()) is not None:
            yield job_id

    first = service.add_job(duration=0)
    await queue.put(first)
    async with wait_for_jobs(client, source(), policy=policy) as fanout:
        seen = [(await anext(fanout)).job_id]
        later = service.add_job(duration=5)
        await queue.put(later)
        seen.append((await anext(fanout)).job_id)
        await queue.put(None)
        seen.extend([result.job_id async for result in fanout])
    assert seen == [first, later]


async def test_add_during_iteration_with_duplicates(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """`add()` during iteration: ids given before, or twice in one call, are polled once and
    reported once; `add()` says how many were new."""
    ids = [service.add_job(duration=60 + i) for i in range(10)]
    more = [service.add_job(duration=i) for i in range(10)]
    fanout = wait_for_jobs(client, ids[:5], policy=policy)
    results: list[JobResult] = []
    async with fanout:
        async for result in fanout:
            results.append(result)
            if len(results) == 1:
                assert fanout.add([*ids, ids[0], uuid.UUID(ids[1])]) == 5
                assert fanout.add(more + more) == 10
                assert fanout.total == 20
            if len(results) == 3:
                assert fanout.add(ids[:3]) == 0
    assert counts(results) == dict.fromkeys(ids + more, 1)
    for job_id in ids + more:
        job = next(result.job for result in results if result.job_id == job_id)
        assert job is not None
        assert job.succeeded
    with pytest.raises(RuntimeError, match="ended"):
        fanout.add([str(uuid.uuid4())])


async def test_add_before_iteration_and_awaiting(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """Ids added before the fan-out starts are awaited with the rest, in the order given."""
    ids = [service.add_job(duration=i) for i in range(6)]
    fanout = wait_for_jobs(client, ids[:2], policy=policy)
    fanout.add(ids[2:])
    results = await fanout
    assert [result.job_id for result in results] == ids


@pytest.mark.parametrize("size", [3, SLICE + 1])
async def test_add_says_how_many_distinct_ids_were_new(client: JobsClient, size: int) -> None:
    """`add()` returns how many distinct ids were new, repeats in its own list counted once,
    also for a long list added to a fan-out that has no id yet."""
    fanout = wait_for_jobs(client, [])
    assert fanout.add(["a"] * size + ["b"]) == 2
    assert fanout.total == 2
    assert fanout.add(["b", "c", "c"]) == 1
    assert fanout.checkpoint()["unstarted"] == ["a", "b", "c"]


async def test_add_is_all_or_none(client: JobsClient) -> None:
    """An id that could never be sent fails the whole `add()` call, naming its position;
    a single id or a non-iterable is a `TypeError`."""
    fanout = wait_for_jobs(client, ["a"])
    with pytest.raises(InvalidJobId, match=r"ids\[1\]"):
        fanout.add(["b", " bad", "c"])
    assert fanout.total == 1
    with pytest.raises(TypeError):
        fanout.add("abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fanout.add(5)  # type: ignore[arg-type]
    await fanout.aclose()
    with pytest.raises(RuntimeError):
        fanout.add(["d"])


async def test_invalid_id_from_a_source_is_reported(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """An id from an async source that could never be sent is one result with an
    `InvalidJobId`, never polled; the other jobs go on."""
    good = service.add_job(duration=3)

    async def source() -> AsyncIterator[object]:
        yield good
        yield "bad\nid"
        yield 42
        yield "bad\nid"

    async with wait_for_jobs(client, source(), policy=policy) as fanout:  # type: ignore[arg-type]
        results = {result.job_id: result async for result in fanout}
    assert set(results) == {good, "bad\nid", "\x0042"}
    assert results[good].ok
    for bad in ("bad\nid", "\x0042"):
        error = results[bad].error
        assert isinstance(error, InvalidJobId)
        assert "from the async iterable" in str(error)
    assert service.request_count() == service.request_count(good)


@pytest.mark.parametrize(
    "given",
    [
        pytest.param([5, "5", 5, b"5"], id="invalid-first"),
        pytest.param(["5", 5, "bad\nid", "bad\nid"], id="valid-first"),
        pytest.param(["", "5", ""], id="empty"),
    ],
)
async def test_an_invalid_value_never_stands_for_a_valid_id(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy, given: list[object]
) -> None:
    """An async source yielding `5` (no job id) and `"5"` (a job) reports each on its own,
    whatever the order: the int with an `InvalidJobId`, the job polled to its end. Each
    invalid value is a result of its own, and `await` returns them all, in order, each
    labelled so that no job's id can equal it: results keyed by `job_id` keep the job's."""
    service.add_job("5", duration=3)

    async def source() -> AsyncIterator[object]:
        for value in given:
            yield value

    results = await wait_for_jobs(client, source(), policy=policy)  # type: ignore[arg-type]
    shown = [value if isinstance(value, str) else f"\x00{value!r}" for value in given]
    assert [result.job_id for result in results] == shown
    for value, result in zip(given, results, strict=True):
        if value == "5":
            assert result.ok
        else:
            assert isinstance(result.error, InvalidJobId)
            with pytest.raises(InvalidJobId):
                check_job_id(result.job_id)
    assert {result.job_id: result for result in results}["5"].ok
    assert service.request_count() == service.request_count("5") > 0


async def test_source_that_raises(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """What the source raises is raised from the iteration once; the jobs it gave stay
    pending, and iterating again reports each of them once."""
    ids = [service.add_job(duration=100 + i) for i in range(5)]

    class Broken(Exception):
        pass

    async def source() -> AsyncIterator[str]:
        for job_id in ids:
            yield job_id
        raise Broken

    results: list[JobResult] = []

    async def drain(fanout: JobsWait) -> None:
        async for result in fanout:
            results.append(result)

    async with wait_for_jobs(client, source(), policy=policy) as fanout:
        with pytest.raises(Broken):
            await drain(fanout)
        await drain(fanout)
    assert counts(results) == dict.fromkeys(ids, 1)


async def test_cancelled_while_the_source_is_read(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """Cancelling the iterating task while the source waits for its next id loses nothing:
    the source is still read, and iterating again reports every id once."""
    ids = [service.add_job(duration=i) for i in range(8)]
    gate = asyncio.Event()
    reading = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        for job_id in ids[:4]:
            yield job_id
        reading.set()
        await gate.wait()
        for job_id in ids[4:]:
            yield job_id

    results: list[JobResult] = []
    async with wait_for_jobs(client, source(), policy=policy) as fanout:

        async def consume() -> None:
            async for result in fanout:
                results.append(result)

        task = asyncio.create_task(consume())
        await reading.wait()
        await until(lambda: len(results) == 4)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        task = asyncio.create_task(consume())
        for _ in range(5):
            await asyncio.sleep(0)
        task.cancel()  # once more, while the reading is paused in the source
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        await consume()
    assert counts(results) == dict.fromkeys(ids, 1)
    assert no_other_tasks()


async def test_break_leaves_no_reader(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """Leaving the fan-out's `async with` ends the task that reads the source."""
    never = asyncio.Event()

    async def source() -> AsyncIterator[str]:
        yield service.add_job(duration=0)
        await never.wait()
        yield "never"

    async with wait_for_jobs(client, source(), policy=policy) as fanout:
        async for _result in fanout:
            break
    assert no_other_tasks()


async def test_jobs_are_set_up_in_slices(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """Many ids are taken in a slice at a time, the event loop running in between, and each
    only once."""
    total = 4 * SLICE + 10
    ids = [service.add_job(duration=600) for _ in range(total)]
    fanout = wait_for_jobs(client, ids, policy=policy)
    taken: list[int] = []

    async def watch() -> None:
        while not taken or taken[-1] < total:
            await asyncio.sleep(0)
            taken.append(len(fanout.time_left()))  # the jobs set up, none ended

    watcher = asyncio.create_task(watch())
    async with fanout:
        consumer = asyncio.create_task(anext(fanout))
        await watcher
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
    stages = sorted(set(taken) - {0})
    assert len(stages) >= 5  # at least five slices, seen from the loop between them
    assert stages[-1] == total
    saved = fanout.checkpoint()
    assert sorted(job["job_id"] for job in saved["jobs"]) == sorted(ids)
    assert saved["unstarted"] == []


async def test_source_is_read_lazily_with_bounded_backlog(client: JobsClient) -> None:
    """A source that never waits is read as the fan-out takes the ids in, not all at once:
    ids read but not set up stay bounded."""
    read = 0

    async def endless() -> AsyncIterator[str]:
        nonlocal read
        yield ""  # no job id: the first result, handed out once the first ids are set up
        while True:
            read += 1
            yield f"job-{read}"

    fanout: JobsWait = wait_for_jobs(client, endless())
    assert isinstance((await anext(fanout)).error, InvalidJobId)  # no more are set up
    for _ in range(200):
        await asyncio.sleep(0)
    assert 0 < read <= 12 * SLICE
    await fanout.aclose()
    assert no_other_tasks()


async def test_reader_cancelled_by_someone_else(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """A shutdown that cancels the task reading the source (every task, say) is raised from
    the iteration as a `RuntimeError` saying so; the jobs read stay pending."""
    first = service.add_job(duration=600)
    never = asyncio.Event()
    readers: list[asyncio.Task[Any] | None] = []

    async def source() -> AsyncIterator[str]:
        readers.append(asyncio.current_task())
        yield first
        await never.wait()

    async with wait_for_jobs(client, source(), policy=policy) as fanout:
        consumer = asyncio.create_task(anext(fanout))
        await until(lambda: fanout.polls > 0)
        [reader] = readers
        assert reader is not None
        reader.cancel()
        with pytest.raises(RuntimeError, match="reading job_ids was cancelled"):
            await consumer
        results = [result async for result in fanout]
    assert [result.job_id for result in results] == [first]


async def test_ids_added_after_the_deadline_time_out_unpolled(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy, clock: VirtualClock
) -> None:
    """Ids that come later share the fan-out's deadline: past it, they are reported with a
    `WaitTimeout` without a poll."""
    first = service.add_job(duration=0)
    late = service.add_job(duration=0)
    async with wait_for_jobs(client, [first], policy=policy, timeout=60) as fanout:
        assert (await anext(fanout)).ok
        clock.advance(61)
        fanout.add([late])
        result = await anext(fanout)
    assert result.job_id == late
    assert isinstance(result.error, TimeoutError)
    assert service.request_count(late) == 0


async def test_a_source_longer_than_the_backlog_is_read_to_its_end(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """A source of more ids than may wait to be set up is read as they are set up, to its
    end, each id once."""
    total = BACKLOG + 3 * SLICE
    service.inject(Slow(60), times=None)  # polls stay out: only the intake moves
    ended = False

    async def source() -> AsyncIterator[str]:
        nonlocal ended
        for number in range(total):
            yield f"job-{number}"
        ended = True

    async with wait_for_jobs(client, source(), policy=policy) as fanout:
        consumer = asyncio.create_task(anext(fanout))
        await until(lambda: ended and len(fanout.time_left()) == total, step=0)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
    assert fanout.total == total
    saved = fanout.checkpoint()
    assert len(saved["jobs"]) + len(saved["unstarted"]) == total


async def test_an_invalid_id_not_handed_out_is_not_in_a_checkpoint(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """An id from a source that could never be sent is reported, not checkpointed: there
    is nothing to wait for."""
    good = service.add_job(duration=600)

    async def source() -> AsyncIterator[str]:
        yield "bad\tid"
        yield good

    async with wait_for_jobs(client, source(), policy=policy) as fanout:
        consumer = asyncio.create_task(anext(fanout))
        await until(lambda: good in fanout.time_left())  # set up after the bad one
        saved = fanout.checkpoint()
        assert (await consumer).job_id == "bad\tid"
    assert [state["job_id"] for state in saved["jobs"]] + saved["unstarted"] == [good]


@pytest.mark.parametrize(
    ("first", "error"),
    [pytest.param("missing-job", NotFound, id="404"), pytest.param("", InvalidJobId, id="invalid")],
)
async def test_break_without_async_with_after_an_error_result_leaves_nothing(
    service: FakeJobsService,
    client: JobsClient,
    policy: PollPolicy,
    first: str,
    error: type[Exception],
) -> None:
    """A `break` out of a plain `async for` drops the fan-out: its reader and its polls end
    at once, also when a result it handed out carries an error (a 404, an invalid id), whose
    traceback must not keep the fan-out alive until a garbage collection."""
    never = asyncio.Event()
    busy = [service.add_job(duration=600) for _ in range(3)]

    async def source() -> AsyncIterator[str]:
        yield first
        for job_id in busy:
            yield job_id
        await never.wait()

    service.inject(Slow(0.05), times=None)  # the other polls are in flight at the break
    async for result in wait_for_jobs(client, source(), policy=policy, max_in_flight=2):
        assert isinstance(result.error, error)
        break
    await until(no_other_tasks)
    assert result.error is not None


async def test_a_fanout_collected_in_a_cycle_ends_its_reader(
    service: FakeJobsService,
    client: JobsClient,
    policy: PollPolicy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A fan-out dropped inside a reference cycle (held by a worker whose method is its
    `on_update`), its reader waiting for room, is collected with the cycle: the reader is
    cancelled and ends, never destroyed while pending."""
    count = 0

    async def endless() -> AsyncIterator[str]:
        nonlocal count
        yield ""  # no job id: the first result, handed out once the first ids are set up
        while True:
            count += 1
            yield f"job-{count}"

    class Worker:
        def __init__(self) -> None:
            self.fanout = wait_for_jobs(client, endless(), policy=policy, on_update=self.seen)

        def seen(self, job: object) -> None:
            pass

    async def reader_waits_for_room(worker: Worker) -> None:
        await anext(worker.fanout)  # no more are set up: the ids read pile up
        await until(lambda: len(worker.fanout.checkpoint()["unstarted"]) >= BACKLOG)

    worker = Worker()
    fanout = weakref.ref(worker.fanout)
    await reader_waits_for_room(worker)
    del worker  # in a cycle: collected by the garbage collector
    gc.collect()
    assert fanout() is None
    await until(no_other_tasks)
    assert "destroyed but it is pending" not in caplog.text


async def test_what_the_source_raises_keeps_its_cause(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """What the source raises is raised as it was: its cause and context (the broken
    connection under a queue's error, say) stay, and no wrapper of jobpoll's shows."""
    first = service.add_job(duration=600)

    async def source() -> AsyncIterator[str]:
        yield first
        try:
            raise ConnectionResetError("the queue's connection dropped")
        except ConnectionResetError as exc:
            raise LookupError("the queue is gone") from exc

    async def implicit() -> AsyncIterator[str]:
        yield first
        try:
            raise ConnectionResetError("the queue's connection dropped")
        except ConnectionResetError:
            raise LookupError("the queue is gone")  # noqa: B904

    for make in (source, implicit):
        async with wait_for_jobs(client, make(), policy=policy) as fanout:
            with pytest.raises(LookupError) as caught:
                async for _result in fanout:
                    pass
        assert isinstance(caught.value.__context__, ConnectionResetError)
        if make is source:
            assert isinstance(caught.value.__cause__, ConnectionResetError)


async def test_what_the_source_raises_is_raised_after_a_cancelled_cleanup(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """A cancellation landing while the fan-out winds its polls down after the source
    raised (a worker stopped at that moment) does not swallow the source's error: the next
    iteration raises it, rather than end as if the source had been read to its end."""
    ids = [service.add_job(duration=600 + i) for i in range(4)]
    raised = False

    async def source() -> AsyncIterator[str]:
        nonlocal raised
        for job_id in ids:
            yield job_id
        await asyncio.sleep(0.01)  # the polls are out by now
        raised = True
        raise LookupError("the queue is gone")

    service.inject(Slow(5), times=None)  # polls stay in flight
    async with wait_for_jobs(client, source(), policy=policy) as fanout:
        consumer = asyncio.ensure_future(anext(fanout))
        # The consumer has taken the source's error and winds the polls down.
        await until(lambda: raised and not fanout.in_flight, step=0)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        service.clear_faults()
        with pytest.raises(LookupError):
            await anext(fanout)


async def test_repeats_in_a_long_list_are_dropped_at_set_up_not_at_the_call(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """A list of more than a slice is kept as given at the call (no set of its ids is made);
    its repeats are dropped as it is set up: with `add()` and a checkpoint taken mid-intake,
    each distinct id is polled and reported once, in the order first given, and the
    checkpoint holds each pending id once."""
    distinct = [service.add_job(duration=i % 7) for i in range(3 * SLICE)]
    given = distinct + distinct[::2] + distinct[: SLICE + 5]  # repeats, across slices
    fanout = wait_for_jobs(client, given, policy=policy)
    assert sets_holding(given[0]) == 0  # no set of the ids built at the call
    assert fanout.total == len(given)  # repeats counted until set up
    extra = [service.add_job(duration=1) for _ in range(3)]
    held: list[str] = []

    async def mid_intake() -> dict[str, Any]:
        while not fanout.time_left():  # noqa: ASYNC110 (one step of the loop, not a time)
            await asyncio.sleep(0)
        assert fanout.checkpoint()["unstarted"]  # the intake yields between two slices
        assert fanout.add([*distinct[-3:], *extra, extra[0]]) == 3
        saved = fanout.checkpoint()
        held.extend([job["job_id"] for job in saved["jobs"]] + saved["unstarted"])
        return saved

    side = asyncio.ensure_future(mid_intake())
    async with fanout:
        results = [result async for result in fanout]
    saved = await side
    assert len(held) == len(set(held)) == len(distinct) + 3
    assert [result.job_id for result in results if result.job_id in extra] == extra
    assert counts(results) == dict.fromkeys(distinct + extra, 1)
    assert fanout.total == len(distinct) + 3
    assert sets_holding(given[0]) == 1  # what add() checks against; the one that sifted
    # the call's list is dropped once set-up ends
    assert all(service.request_count(job_id) >= 1 for job_id in distinct + extra)
    resumed = wait_for_jobs(client, [], policy=policy, resume=saved)
    again = await resumed
    assert sorted(result.job_id for result in again) == sorted(set(held))


async def test_await_on_a_long_list_with_repeats_returns_one_result_per_id(
    service: FakeJobsService, client: JobsClient, policy: PollPolicy
) -> None:
    """`await` gives one result per distinct id, in the order first given."""
    distinct = [service.add_job(duration=i % 3) for i in range(2 * SLICE + 1)]
    given = [job_id for job_id in distinct for _ in range(2)]
    results = await wait_for_jobs(client, given, policy=policy)
    assert [result.job_id for result in results] == distinct

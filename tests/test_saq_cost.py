"""What a SAQ wait costs Redis: the form its records keep its checkpoint in (its values in
declared order, read back to the same wait; more in `test_saq_form.py`), its weight while it
waits (`MEMORY USAGE` on a real Redis), and links of the previous forms still run. Links are
run in this process, one after the other, against the fake service."""

from __future__ import annotations

import inspect
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest

pytest.importorskip("saq", reason="the saq extra is not installed (pip install '.[saq]')")

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from saq import Job as SaqJob
from saq import Queue
from saq.job import Status

from jobpoll import CheckpointError, JobsClient, JobStatus, PollPolicy
from jobpoll._checkpoint import job_checkpoint
from jobpoll._saq_books import Ended, LinkQueue
from jobpoll._saq_form import link_checkpoint, resume_link
from jobpoll._saq_links import LINK_TTL, POLL_FUNCTION, Kept, Links
from jobpoll._saq_mend import Mending
from jobpoll._saq_outcomes import Outcomes
from jobpoll._saq_poll import Link
from jobpoll._saq_rate import FleetRate
from jobpoll.saq import SaqWaits
from jobpoll.testing import FakeJobsService

#: A waiting job's own records in Redis (its `wait:<id>` hash, its kept checkpoint and its
#: share of the parked set, by `MEMORY USAGE`) weigh at most this many bytes after its first
#: poll, and after five and twelve with its job's progress moving (measured: 680, and 744
#: after five and twelve, the share of a parked set of two; kept in the keyed form of the
#: whole checkpoint's fields, 820 and 1,140 (after twelve); when a waiting job was a SAQ job
#: carrying its checkpoint, 1,400 and 1,900; SAQ's bare job record of such a wait, with its
#: function, key, job id, step and schedule, weighs about 440).
MOST_BYTES_ONCE = 700
MOST_BYTES_MANY = 760


@attrs.frozen
class Chain:
    """The links of waits run one after the other in this process, as a worker runs them."""

    links: Links
    policy: PollPolicy
    client: JobsClient
    rate: FleetRate

    async def saved(self, job_id: str) -> Any:
        """The checkpoint the wait's records keep for its next link."""
        return json.loads(await self.links.redis.get(self.links.saved_key(job_id)))

    async def run(self, job_id: str, step: int) -> str:
        """Run link `step` of the wait on `job_id`, from the state its records keep, or, a
        link of an earlier version enqueued, from the one its SAQ arguments carry."""
        stored = await self.links.queue.job(f"jobpoll:{job_id}:{step}")
        earlier = dict(stored.kwargs or {}) if stored is not None else {}
        earlier.pop("job_id", None)
        earlier.pop("step", None)
        outcomes = Outcomes(links=self.links, function=None, retries=1, timeout=10.0)
        link = Link(self.links, outcomes, self.policy, self.client, self.rate, job_id, step, "t")
        return await link.run(earlier)

    async def weight(self, job_id: str, step: int) -> int:
        """The bytes of the waiting job's own records and its share of the parked set
        (`MEMORY USAGE`); it has no SAQ job."""
        redis, links = self.links.redis, self.links
        assert not await redis.exists(links.link_id(job_id, step))
        assert await redis.zscore(links.parked_key, job_id) is not None
        keys = [links.wait_key(job_id), links.saved_key(job_id)]
        own = sum([int(await redis.memory_usage(key) or 0) for key in keys])
        parked = int(await redis.memory_usage(links.parked_key) or 0)
        return own + parked // int(await redis.zcard(links.parked_key))


@pytest.fixture
async def chain(redis_url: str, client: JobsClient) -> AsyncIterator[Chain]:
    queue = Queue.from_url(redis_url, name="c" + uuid.uuid4().hex[:8])
    links = Links(queue=queue, poll_timeout=30.0, outcome_ttl=60.0)
    rate = FleetRate(None, time.monotonic)
    await links.read_rate(rate)  # Redis's clock, mirrored
    # The waits' rules on Redis's clock, as a worker's (`SaqWaits`); the next poll in ten
    # minutes, which no test waits for: each runs the links itself.
    policy = PollPolicy(initial=600.0, max_interval=600.0, clock=rate.now, wall_clock=rate.now)
    try:
        yield Chain(links, policy, client, rate)
    finally:
        await queue.disconnect()


async def test_a_waiting_job_weighs_at_most_its_bound(
    chain: Chain, service: FakeJobsService
) -> None:
    """A wait polled once, and one polled five and twelve times while its job's progress
    moved, weigh at most `MOST_BYTES_ONCE` and `MOST_BYTES_MANY` in Redis while they wait for
    their next poll."""
    once, many = service.add_job(duration=10**6), service.add_job(duration=10**6)
    assert await chain.links.submit([once, many], None) == [True, True]
    assert await chain.run(once, 0) == "polled"
    for step in range(12):
        service.set_job(many, status="RUNNING", progress=7 * step)
        assert await chain.run(many, step) == "polled"
        if step == 4:
            assert await chain.weight(many, 5) <= MOST_BYTES_MANY
    assert await chain.weight(once, 1) <= MOST_BYTES_ONCE
    assert await chain.weight(many, 12) <= MOST_BYTES_MANY
    _header, state = await chain.saved(many)
    job, _failures, polls = state[:3]  # the state's fields in their declared order
    assert (polls, job["progress"]) == (12, 77)


async def test_a_link_carries_its_checkpoint_in_the_links_form_and_reads_it_back(
    chain: Chain, service: FakeJobsService
) -> None:
    """The wait's records keep its checkpoint in the links' form (its values in declared
    order, less the job id and the trailing defaults), read back to the wait it was taken of."""
    job_id = service.add_job(duration=10**6)
    assert await chain.links.submit([job_id], None) == [True]
    for step in range(3):
        service.set_job(job_id, status="RUNNING", progress=10 * step)
        assert await chain.run(job_id, step) == "polled"
    saved = await chain.saved(job_id)
    header, state_values = saved
    assert len(header) == 2  # version and taken_at: no timeout, no deadline, nothing owed
    assert job_id not in json.dumps(saved)
    record = await chain.links.redis.hmget(chain.links.wait_key(job_id), ["due", "timeout"])
    kept = Kept.read(await chain.links.redis.get(chain.links.saved_key(job_id)), *record)
    rules, state = resume_link(kept.checkpoint, job_id, chain.policy)
    assert (state.polls, state.answers, state.job and state.job.progress) == (3, 3, 20)
    assert kept.due is not None
    assert state.next_poll_at == pytest.approx(kept.due, abs=0.002)
    again = link_checkpoint(rules, state)
    assert [len(again[0]), len(again[1]), len(again[1][-1])] == [
        2,
        len(state_values),
        len(state_values[-1]),
    ]
    whole = job_checkpoint(rules, state)
    assert len(json.dumps(saved)) < 0.4 * len(json.dumps(whole))


@pytest.mark.parametrize("argument", ["checkpoint", "saved"])
async def test_a_link_written_with_the_whole_checkpoint_still_runs(
    chain: Chain, service: FakeJobsService, argument: str
) -> None:
    """A link of an earlier version, carrying its wait's checkpoint in its SAQ arguments (the
    whole checkpoint, its job id in it, as `checkpoint`, as the oldest did; the keyed form,
    less the job id and fields at their defaults, as `saved`, as the previous version did),
    runs from it, and keeps the next link's state in the wait's records, in the links' form."""
    job_id = service.add_job(duration=10**6)
    assert await chain.links.submit([job_id], None) == [True]
    assert await chain.run(job_id, 0) == "polled"
    saved = await chain.saved(job_id)
    rules, state = resume_link(saved, job_id, chain.policy)
    whole = job_checkpoint(rules, state)
    assert whole["job_id"] == job_id
    # As the earlier version left it: the wait's live link a SAQ job carrying its state.
    links = chain.links
    await links.redis.hset(links.wait_key(job_id), "step", 2)
    await links.redis.zrem(links.parked_key, job_id)
    await links.redis.delete(links.saved_key(job_id))
    keyed = {k: v for k, v in whole.items() if k not in ("job_id", "owed", "failures")}
    keyed["job"] = {k: v for k, v in whole["job"].items() if k != "id"}
    carried = {"checkpoint": whole, "saved": keyed}[argument]
    kwargs = {"job_id": job_id, "step": 2, argument: carried, "due": chain.rate.now()}
    earlier = links.saq_job(
        function=POLL_FUNCTION, key=f"jobpoll:{job_id}:2", kwargs=kwargs, timeout=0, retries=9
    )
    await links.queue.enqueue(earlier)
    assert await chain.run(job_id, 2) == "polled"
    following = await chain.saved(job_id)
    assert isinstance(following, list)
    assert following[1][2] == 2  # polls
    assert await links.redis.hget(links.wait_key(job_id), "step") == b"3"


async def test_a_parked_wait_is_a_saq_job_once_due_and_is_polled(
    chain: Chain, service: FakeJobsService
) -> None:
    """A wait parked until its next poll is due has no SAQ job; once due (by Redis's clock),
    the upkeep enqueues its link, as SAQ's `enqueue` would a job of its job id and step, and
    the link, as a worker dequeues it, polls from the state the wait's records keep."""
    job_id = service.add_job(duration=10**6)
    links = chain.links
    assert await links.submit([job_id], 30.0) == [True]
    first = await links.queue.dequeue()
    assert first is not None
    assert first.kwargs == {"job_id": job_id, "step": 0, "kept": 1}
    assert await chain.run(job_id, 0) == "polled"
    assert await links.release_due() == 0  # due in ten minutes
    assert not await links.redis.exists(links.link_id(job_id, 1))
    # Ten minutes on: the wait is due.
    await links.redis.zadd(links.parked_key, {job_id: chain.rate.now() - 1})
    assert await links.release_due() == 1
    assert not await links.redis.zscore(links.parked_key, job_id)
    job = await links.queue.dequeue()
    assert job is not None
    expected = links.link(job_id, 1).to_dict()
    assert {**job.to_dict(), "queued": 0} == {**expected, "queued": 0, "status": job.status}
    assert job.function == POLL_FUNCTION
    assert job.kwargs == {"job_id": job_id, "step": 1, "kept": 1}
    assert abs(job.queued / 1000 - chain.rate.now()) < 60  # Redis's clock, in milliseconds
    assert await chain.run(job_id, 1) == "polled"
    header, state = await chain.saved(job_id)
    assert state[2] == 2  # polls
    assert header[2] == 30.0  # timeout
    assert await links.release_due() == 0


async def test_a_job_id_of_any_printable_characters_makes_its_link(
    chain: Chain, service: FakeJobsService
) -> None:
    """The link a script writes for an id with quotes, backslashes, slashes and non-ASCII
    letters reads back to that id, as SAQ reads a job."""
    job_id = 'a"b\\c/d é ✓ {x}'
    links = chain.links
    assert await links.submit([job_id], None) == [True]
    job = await links.queue.dequeue()
    assert job is not None
    assert job.kwargs == {"job_id": job_id, "step": 0, "kept": 1}
    assert job.key == f"jobpoll:{job_id}:0"
    assert job.id == links.link_id(job_id, 0)


async def previous_poll(
    ctx: dict[str, Any],
    *,
    job_id: str,
    step: int,
    checkpoint: dict[str, Any] | None = None,
    saved: dict[str, Any] | None = None,
    timeout: float | None = None,  # noqa: ASYNC109 - the wait's deadline
    due: float | None = None,
) -> str:
    """The arguments the previous version's `SaqWaits.poll` takes: its links carried their
    wait's state (a link of job id and step only it would run as a wait not begun)."""
    raise AssertionError("not called: SAQ's call fails on its arguments")


async def test_a_worker_of_the_previous_version_refuses_a_link_and_saq_retries_it(
    chain: Chain, service: FakeJobsService
) -> None:
    """A link as the scripts enqueue it has an argument (`kept`) the previous version's
    `poll` does not take: a worker of that version fails it at once, as SAQ calls it, and SAQ
    retries it (to a worker of this version), instead of running it from no state, its
    timeout dropped. This version's `poll` takes it."""
    job_id = service.add_job(duration=10**6)
    assert await chain.links.submit([job_id], 30.0) == [True]
    link = await chain.links.queue.dequeue()
    assert link is not None
    assert link.kwargs is not None
    with pytest.raises(TypeError, match="kept"):
        await previous_poll({}, **link.kwargs)
    assert link.retries >= 100
    inspect.signature(SaqWaits.poll).bind(object(), {}, **link.kwargs)


async def test_a_parked_wait_enqueued_by_the_previous_version_is_queued_once_from_its_state(
    chain: Chain, service: FakeJobsService
) -> None:
    """The previous version's `mend` saw a parked wait as lost, and enqueued its live link as a
    wait not begun (`checkpoint: None`): once the wait is due, it is not enqueued a second
    time, and that link runs from the state the wait's records keep, its timeout with it."""
    job_id = service.add_job(duration=10**6)
    links = chain.links
    assert await links.submit([job_id], 30.0) == [True]
    assert await chain.run(job_id, 0) == "polled"
    assert await links.redis.zscore(links.parked_key, job_id) is not None
    kwargs = {"job_id": job_id, "step": 1, "checkpoint": None, "timeout": None}
    previous = links.saq_job(
        function=POLL_FUNCTION, key=f"jobpoll:{job_id}:1", kwargs=kwargs, timeout=0, retries=9
    )
    await links.queue.enqueue(previous)
    await links.redis.zadd(links.parked_key, {job_id: chain.rate.now() - 1})
    assert await links.release_due() == 1
    queued = await links.redis.lrange(links.queue.namespace("queued"), 0, -1)
    assert queued.count(links.link_id(job_id, 1).encode()) == 1
    assert await chain.run(job_id, 1) == "polled"
    rules, state = resume_link(await chain.saved(job_id), job_id, chain.policy)
    assert (state.polls, rules.timeout) == (2, 30.0)


async def test_mending_deletes_the_checkpoints_of_waits_no_longer_live(
    chain: Chain, service: FakeJobsService
) -> None:
    """A kept checkpoint whose wait is no longer live (its record gone, or ended without it)
    weighs on Redis for nothing: a round of mending deletes it, and keeps a live wait's."""
    links, redis = chain.links, chain.links.redis
    live, gone, ended = [service.add_job(duration=10**6) for _ in range(3)]
    assert await links.submit([live, gone, ended], None) == [True, True, True]
    for job_id in (live, gone, ended):
        assert await chain.run(job_id, 0) == "polled"
    await redis.delete(links.wait_key(gone))  # evicted, say
    await redis.hdel(links.wait_key(ended), "step")
    assert await Mending(links).mend() == 0
    assert await redis.exists(links.saved_key(live)) == 1
    assert await redis.exists(links.saved_key(gone), links.saved_key(ended)) == 0
    assert await chain.run(live, 1) == "polled"  # the live wait goes on from its checkpoint
    assert resume_link(await chain.saved(live), live, chain.policy)[1].polls == 2


#: The commands that run a script.
SENT = ("evalsha", "eval")


async def test_a_poll_costs_its_worker_two_redis_commands(
    chain: Chain, service: FakeJobsService
) -> None:
    """A link's poll sends Redis two commands, each a script called by its SHA: its begin
    (the step check, the turn and the kept state) and its hand-over. (Each command costs a
    worker's CPU as much as the whole rest of a poll's own bookkeeping, about.)"""
    redis = chain.links.redis
    job_id = service.add_job(duration=10**6)
    assert await chain.links.submit([job_id], None) == [True]
    assert await chain.run(job_id, 0) == "polled"  # the scripts are loaded by now

    async def scripts() -> dict[str, int]:
        stats = await redis.info("commandstats")
        return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in SENT}

    before = await scripts()
    assert await chain.run(job_id, 1) == "polled"
    after = await scripts()
    assert {name: after[name] - before[name] for name in SENT} == {"evalsha": 2, "eval": 0}


async def sent(redis: Redis, action: Any) -> list[str]:
    """The commands a client sends Redis while `action()` runs (not those its scripts run),
    by name, as `MONITOR` sees them."""
    async with redis.monitor() as monitor:
        await action()
        await redis.echo("sent: the end")
        names: list[str] = []
        while (command := await monitor.next_command())["command"] != "ECHO sent: the end":
            if command["client_type"] != "lua":
                names.append(command["command"].split(" ", 1)[0].lower())
        return names


def link_queue(chain: Chain) -> LinkQueue:
    """The queue a worker runs links on (`SaqWaits.worker_settings`), each link begun as
    SAQ starts its job, run by `chain` as a worker runs it."""
    links = chain.links
    outcomes = Outcomes(links=links, function=None, retries=1, timeout=10.0)

    async def begin(job: SaqJob) -> Any:
        job_id, step = job.kwargs["job_id"], job.kwargs["step"]  # type: ignore[index]
        link = Link(links, outcomes, chain.policy, chain.client, chain.rate, job_id, step, "t", job)
        return await link.begin()

    return LinkQueue(links.queue, links.queue, {POLL_FUNCTION: begin})


async def go_on(chain: Chain, job: SaqJob) -> Any:
    """What follows the begin of link `job` (started by `link_queue`'s queue)."""
    queue = job.queue
    assert isinstance(queue, LinkQueue)
    started = queue.started(job)
    assert started is not None
    assert started.job is job
    outcomes = Outcomes(links=chain.links, function=None, retries=1, timeout=10.0)
    job_id, step = job.kwargs["job_id"], job.kwargs["step"]  # type: ignore[index]
    link = Link(
        chain.links, outcomes, chain.policy, chain.client, chain.rate, job_id, step, "t", job
    )
    return await link.go_on(started.found)


@pytest.mark.parametrize("ends", ["polled", "over"])
async def test_a_link_run_as_a_saq_job_writes_saqs_start_and_end_in_its_own_two_scripts(
    chain: Chain, service: FakeJobsService, ends: str
) -> None:
    """A link a SAQ worker runs sends Redis its begin, as SAQ starts its job, and its
    hand-over (or its wait's end), nothing more: SAQ's own records of the link's start (its
    status active, announced) and end (complete with its result, out of `active` and
    `incomplete`, kept `LINK_TTL` seconds), which SAQ writes in four round trips of their
    own, are written in them."""
    links, redis = chain.links, chain.links.redis
    warm, job_id = service.add_job(duration=10**6), service.add_job(duration=10**6)
    if ends == "over":
        for ending in (warm, job_id):
            service.set_job(ending, status=JobStatus.FINISHED, progress=100)
    assert await links.submit([warm], None) == [True]
    assert await links.queue.dequeue() is not None
    assert await chain.run(warm, 0) == ends  # the scripts are loaded by now
    assert await links.submit([job_id], None) == [True]
    job = await link_queue(chain).dequeue()
    assert job is not None
    assert job.kwargs == {"job_id": job_id, "step": 0, "kept": 1}
    runs: list[Any] = []
    channel = redis.pubsub()
    await channel.subscribe(job.id)

    async def start() -> None:  # as SAQ's worker starts a job
        job.started, job.attempts = int(time.time() * 1000), job.attempts + 1
        await job.update(status=Status.ACTIVE)

    async def run() -> None:
        runs.append(await go_on(chain, job))
        await job.finish(Status.COMPLETE, result=runs[0])

    assert await sent(redis, start) == ["evalsha"]
    active = await links.queue.job(job.key)
    assert active is not None
    assert (active.status, active.started, active.attempts) == (Status.ACTIVE, job.started, 1)
    assert await sent(redis, run) == ["evalsha"]
    assert runs == [Ended(ends)]
    stored = await links.queue.job(job.key)
    assert stored is not None
    assert (stored.status, stored.result, stored.error) == (Status.COMPLETE, ends, None)
    assert (stored.started, stored.attempts) == (job.started, 1)
    assert 0 < await redis.ttl(job.id) <= LINK_TTL
    assert job.id.encode() not in await redis.lrange(links.queue.namespace("active"), 0, -1)
    assert await redis.zscore(links.queue.namespace("incomplete"), job.id) is None
    assert links.queue.complete == 1
    announced = []
    for _ in range(5):  # the subscription's own message, the two announced, none more
        message = await channel.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            announced.append(message["data"])
    assert announced == [b"active", b"complete"]
    await channel.aclose()


async def test_a_link_superseded_is_ended_by_saq(chain: Chain, service: FakeJobsService) -> None:
    """A link that finds itself superseded as it begins returns a plain result: SAQ ends it
    as any job, and its begin wrote its start all the same."""
    links, redis = chain.links, chain.links.redis
    job_id = service.add_job(duration=10**6)
    assert await links.submit([job_id], None) == [True]
    job = await link_queue(chain).dequeue()
    assert job is not None
    assert await chain.run(job_id, 0) == "polled"  # run once already: superseded
    await job.update(status=Status.ACTIVE)
    stored = await links.queue.job(job.key)
    assert stored is not None
    assert stored.status == Status.ACTIVE
    result = await go_on(chain, job)
    assert result == "superseded"
    await job.finish(Status.COMPLETE, result=result)
    stored = await links.queue.job(job.key)
    assert stored is not None
    assert (stored.status, stored.result) == (Status.COMPLETE, "superseded")
    assert await redis.lrange(links.queue.namespace("active"), 0, -1) == []
    assert links.queue.complete == 1


@pytest.mark.parametrize("kept", [b"\xff\xfe[", b'[[3, 1], {"no": "form"}]', b'"\x00\\'])
async def test_a_garbled_checkpoint_ends_its_wait_with_a_checkpoint_error(
    chain: Chain, service: FakeJobsService, kept: bytes
) -> None:
    """A kept checkpoint that is no checkpoint (bytes that are no text, no JSON, no form) ends
    its wait with a `CheckpointError` as its outcome, never a worker's crash or a lost wait."""
    links = chain.links
    job_id = service.add_job(duration=10**6)
    assert await links.submit([job_id], None) == [True]
    assert await chain.run(job_id, 0) == "polled"
    await links.redis.set(links.saved_key(job_id), kept)
    assert await chain.run(job_id, 1) == "over"
    stored, _held = await links.stored([job_id])
    assert isinstance(stored[job_id].error, CheckpointError)


#: Text a service may put in a job's fields: non-ASCII letters, an emoji, a lone surrogate
#: (as JSON may spell one), control characters, quotes, backslashes and slashes.
HOSTILE = 'é ✓ \U0001f600 \ud800 \x00\x01\x1f\x7f \t\n "q" \\ / \\u0041 \u2028'


async def test_a_kept_checkpoint_of_any_text_reads_back_as_it_was_kept(
    chain: Chain, service: FakeJobsService
) -> None:
    """The kept checkpoint of a job whose fields hold any text comes back with a link's begin
    (one reply, its JSON encoded in Redis) as the very value the wait's records keep."""
    links = chain.links
    job_id = service.add_job(duration=10**6, user=HOSTILE, running_status="RUNNING " + HOSTILE)
    assert await links.submit([job_id], None) == [True]
    assert await chain.run(job_id, 0) == "polled"
    kept = await chain.saved(job_id)
    assert kept[1][0]["user"] == HOSTILE
    begun = await links.begin(job_id, 1, chain.rate, 600.0, "t")
    assert begun is not None
    assert begun[1].checkpoint == kept
    assert json.dumps(begun[1].checkpoint) == json.dumps(kept)


async def test_a_kept_checkpoint_with_bytes_that_are_no_text_ends_with_a_checkpoint_error(
    chain: Chain, service: FakeJobsService
) -> None:
    """A kept checkpoint whose bytes are no UTF-8 where the form holds a string (a job's
    field) is no checkpoint: its wait ends with a `CheckpointError`, never goes on from a
    checkpoint with its text changed."""
    links = chain.links
    job_id = service.add_job(duration=10**6)
    assert await links.submit([job_id], None) == [True]
    assert await chain.run(job_id, 0) == "polled"
    kept = await links.redis.get(links.saved_key(job_id))
    garbled = kept.replace(b"742429", b"742\xff29")
    assert garbled != kept
    await links.redis.set(links.saved_key(job_id), garbled)
    assert await chain.run(job_id, 1) == "over"
    stored, _held = await links.stored([job_id])
    assert isinstance(stored[job_id].error, CheckpointError)


async def test_a_link_run_again_after_its_hand_over_changes_nothing(
    chain: Chain, service: FakeJobsService
) -> None:
    """A link run a second time (SAQ ran it twice, or retried it after its hand-over) finds
    its step moved on: its begin, hold, hand-over and end each do nothing, and it sends no
    poll: the wait has one chain and the state its next link runs from is untouched. (A poll
    that was sent and accepted is counted in the shared rate even so: the service saw it.)"""
    links, redis = chain.links, chain.links.redis
    job_id = service.add_job(duration=10**6)
    assert await links.submit([job_id], None) == [True]
    assert await chain.run(job_id, 0) == "polled"

    async def records() -> list[Any]:
        keys = [links.wait_key(job_id), *links.rate_keys]
        return [
            *[await redis.hgetall(key) for key in (keys[0], keys[1])],
            await redis.lrange(keys[2], 0, -1),
            await redis.get(links.saved_key(job_id)),
            await redis.zscore(links.parked_key, job_id),
        ]

    before, polls = await records(), service.request_count(job_id)
    assert await chain.run(job_id, 0) == "superseded"
    assert await links.begin(job_id, 0, chain.rate, 600.0, "again") is None
    await links.held(job_id, 0, CheckpointError("stale"))
    await links.hand_over(job_id, 0, [[3, 0], []], chain.rate.now(), chain.rate.now())
    outcome = links.saq_job(function="", key=f"jobpoll:outcome:{job_id}")
    data = {"jobId": job_id, "status": "FINISHED"}
    assert not await links.deliver(data, outcome, 0, answered_at=None)
    assert await records() == before
    assert service.request_count(job_id) == polls
    assert await chain.run(job_id, 1) == "polled"


async def test_mending_keeps_the_checkpoint_of_a_wait_live_again_or_in_flight(
    chain: Chain, service: FakeJobsService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A round of mending deletes no checkpoint of a live wait: not one whose link a worker
    is running, nor one submitted again and polled between the round's reading that it was
    not live and its delete (the delete checks again, in its script)."""
    links, redis = chain.links, chain.links.redis
    again, running = service.add_job(duration=10**6), service.add_job(duration=10**6)
    assert await links.submit([again, running], None) == [True, True]
    for job_id in (again, running):
        assert await chain.run(job_id, 0) == "polled"
    assert await links.begin(running, 1, chain.rate, 600.0, "busy") is not None  # in flight
    await redis.delete(links.wait_key(again))  # its record lost (evicted, say)
    delete = AsyncScript.__call__
    raced: list[str] = []

    async def racing(script: AsyncScript, *args: Any, **kwargs: Any) -> Any:
        if "DEL', KEYS[2])" in str(script.script) and not raced:  # the round's delete
            raced.append(again)
            assert await links.submit([again], None) == [True]
            assert await chain.run(again, 0) == "polled"
        return await delete(script, *args, **kwargs)

    monkeypatch.setattr(AsyncScript, "__call__", racing)
    assert await Mending(links).mend() == 0
    monkeypatch.undo()
    assert raced == [again]
    assert await redis.exists(links.saved_key(again), links.saved_key(running)) == 2
    assert await chain.run(again, 1) == "polled"
    assert resume_link(await chain.saved(again), again, chain.policy)[1].polls == 2

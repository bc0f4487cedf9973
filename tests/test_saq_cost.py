"""What a SAQ wait costs Redis: the form its links carry its checkpoint in (less what the
declarations say, read back to the same wait), its weight while it waits (`MEMORY USAGE` on a
real Redis), and a link of the previous form still run. Links are run in this process, one
after the other, against the fake service."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest

pytest.importorskip("saq", reason="the saq extra is not installed (pip install '.[saq]')")

from saq import Queue

from jobpoll import JobsClient, PollPolicy
from jobpoll._checkpoint import job_checkpoint, resume_job
from jobpoll._saq_form import carried, checkpoint_of, link_checkpoint
from jobpoll._saq_links import Links
from jobpoll._saq_outcomes import Outcomes
from jobpoll._saq_poll import Link
from jobpoll._saq_rate import FleetRate
from jobpoll.testing import FakeJobsService

#: A waiting job's own records in Redis (its live link's SAQ record and its `wait:<id>` hash,
#: by `MEMORY USAGE`) weigh at most this many bytes after its first poll, and after twelve
#: with its job's progress moving (links carrying the whole checkpoint: 2,048 after the first;
#: SAQ's bare job record of such a wait, with its function, key, job id, step and schedule,
#: weighs about 440).
MOST_BYTES_ONCE = 1400
MOST_BYTES_MANY = 1900


@attrs.frozen
class Chain:
    """The links of waits run one after the other in this process, as a worker runs them."""

    links: Links
    policy: PollPolicy
    client: JobsClient
    rate: FleetRate

    async def kwargs(self, job_id: str, step: int) -> dict[str, Any]:
        stored = await self.links.queue.job(f"jobpoll:{job_id}:{step}")
        assert stored is not None
        assert stored.kwargs is not None
        return stored.kwargs

    async def run(self, job_id: str, step: int) -> str:
        """Run link `step` of the wait on `job_id`, as stored in Redis."""
        kwargs = await self.kwargs(job_id, step)
        outcomes = Outcomes(links=self.links, function=None, retries=1, timeout=10.0)
        link = Link(self.links, outcomes, self.policy, self.client, self.rate, job_id, step, "t")
        return await link.run(carried(kwargs), kwargs.get("timeout"), kwargs.get("due"))

    async def weight(self, job_id: str, step: int) -> int:
        """The bytes of the wait's live link `step` and its record (`MEMORY USAGE`)."""
        redis = self.links.redis
        keys = [self.links.link_id(job_id, step), self.links.wait_key(job_id)]
        return sum([int(await redis.memory_usage(key) or 0) for key in keys])


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
    """A wait polled once, and one polled twelve times while its job's progress moved, weigh
    at most `MOST_BYTES_ONCE` and `MOST_BYTES_MANY` in Redis while they wait for their next
    poll."""
    once, many = service.add_job(duration=10**6), service.add_job(duration=10**6)
    assert await chain.links.submit([once, many], None) == [True, True]
    assert await chain.run(once, 0) == "polled"
    for step in range(12):
        service.set_job(many, status="RUNNING", progress=7 * step)
        assert await chain.run(many, step) == "polled"
    assert await chain.weight(once, 1) <= MOST_BYTES_ONCE
    assert await chain.weight(many, 12) <= MOST_BYTES_MANY
    saved = (await chain.kwargs(many, 12))["saved"]
    assert saved["polls"] == 12
    assert saved["job"]["progress"] == 77


async def test_a_link_carries_its_checkpoint_less_the_defaults_and_reads_it_back(
    chain: Chain, service: FakeJobsService
) -> None:
    """A link's form of the checkpoint leaves out the job id and the fields at their declared
    defaults, and is read back to the wait it was taken of."""
    job_id = service.add_job(duration=10**6)
    assert await chain.links.submit([job_id], None) == [True]
    for step in range(3):
        service.set_job(job_id, status="RUNNING", progress=10 * step)
        assert await chain.run(job_id, step) == "polled"
    kwargs = await chain.kwargs(job_id, 3)
    assert "checkpoint" not in kwargs  # a worker of an earlier version refuses the link
    saved = kwargs["saved"]
    assert "job_id" not in saved
    assert "id" not in saved["job"]
    assert not {"timeout", "deadline", "owed", "failures"} & set(saved)
    rules, state, owed = resume_job(
        checkpoint_of(saved, job_id, chain.policy), job_id, chain.policy
    )
    assert not owed
    assert (state.polls, state.answers, state.job and state.job.progress) == (3, 3, 20)
    again = link_checkpoint(rules, state)
    assert set(again) == set(saved)
    assert set(again["pace"]) == set(saved["pace"])
    whole = job_checkpoint(rules, state)
    assert len(json.dumps(saved)) < 0.8 * len(json.dumps(whole))


async def test_a_link_written_with_the_whole_checkpoint_still_runs(
    chain: Chain, service: FakeJobsService
) -> None:
    """A link written before links left out what the declarations say (the whole checkpoint,
    its job id in it) runs, and hands the next link the checkpoint in the new form."""
    job_id = service.add_job(duration=10**6)
    assert await chain.links.submit([job_id], None) == [True]
    assert await chain.run(job_id, 0) == "polled"
    saved = (await chain.kwargs(job_id, 1))["saved"]
    rules, state, _owed = resume_job(
        checkpoint_of(saved, job_id, chain.policy), job_id, chain.policy
    )
    whole = job_checkpoint(rules, state)
    assert whole["job_id"] == job_id
    now = chain.rate.now()
    await chain.links.hand_over(job_id, 1, whole, now, now)  # as the previous version did
    assert (await chain.kwargs(job_id, 2))["checkpoint"] == whole
    assert await chain.run(job_id, 2) == "polled"
    following = (await chain.kwargs(job_id, 3))["saved"]
    assert "job_id" not in following
    assert following["polls"] == 2

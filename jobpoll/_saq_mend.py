"""`Mending`: a queue's waits that SAQ lost, enqueued again, and the checkpoints of waits no
longer live, deleted. A worker runs it every `mend_interval` seconds (`_saq_rescue.
mend_forever`, one worker at a time), `SaqWaits.mend()` by hand.

A live wait is lost when it is neither parked nor its link in SAQ's `incomplete` set (SAQ's
sweep, killed between taking a job out and putting it back, leaves it in no queue): seen so
two rounds in a row (`suspects`, by job id and step: a link on its way between the two is
not), its live link is enqueued again, from the state its wait's records keep (or, a link of
an earlier version, from its SAQ record), in a script that checks it is still live and lost.

A kept checkpoint (`saved:<job id>`) whose wait is no longer live (its record gone, or ended)
weighs on Redis for nothing: a round deletes it, in a script that checks the wait is still not
live (a wait submitted again meanwhile starts with no checkpoint, so nothing it keeps is lost).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import cast

import attrs
from redis.commands.core import AsyncScript

from jobpoll._saq_links import AS_KEPT, Kept, Links
from jobpoll._saq_scripts import KEEP, LIVE, MEND, PARK

logger = logging.getLogger("jobpoll")

# KEYS: the wait's record and its kept checkpoint; deletes the checkpoint unless the wait is live.
_DROP_SAVED = """
if redis.call('HEXISTS', KEYS[1], 'step') == 1 then return 0 end
return redis.call('DEL', KEYS[2])
"""


@attrs.define
class Mending:
    """The mending of one queue's waits (see the module)."""

    links: Links
    _mend: AsyncScript = attrs.field(init=False)
    _drop_saved: AsyncScript = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        redis, maker = self.links.redis, self.links.maker
        self._mend = redis.register_script(maker + LIVE + MEND + KEEP + PARK + "return 1")
        self._drop_saved = redis.register_script(_DROP_SAVED)

    async def mend(self) -> int:
        """A round: enqueue again each wait lost two rounds in a row, and delete the kept
        checkpoints of waits no longer live; how many waits were enqueued again."""
        links = self.links
        suspects_key = links.prefix + "suspects"
        raw = await cast("Awaitable[dict[bytes, bytes]]", links.redis.hgetall(suspects_key))
        before = {job_id.decode(): step.decode() for job_id, step in raw.items()}
        suspects: dict[str, str] = {}
        mended = 0
        async for job_ids in links.waits():
            for job_id, step in await self._unqueued(job_ids):
                if before.get(job_id) == step:
                    mended += await self._mend_one(job_id, int(step))
                else:
                    suspects[job_id] = step
        async with links.redis.pipeline(transaction=True) as pipe:
            pipe.delete(suspects_key)
            if suspects:
                pipe.hset(suspects_key, mapping=suspects)
            await pipe.execute()
        await self.drop_saved()
        return mended

    async def drop_saved(self) -> int:
        """Delete each kept checkpoint whose wait is no longer live; how many."""
        links = self.links
        dropped = 0
        async for job_ids in links.ids_under(links.saved_key("")):
            async with links.redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hexists(links.wait_key(job_id), "step")
                live = await pipe.execute()
            orphans = [job_id for job_id, waited in zip(job_ids, live, strict=True) if not waited]
            if not orphans:
                continue
            async with links.redis.pipeline(transaction=False) as pipe:
                for job_id in orphans:
                    keys = [links.wait_key(job_id), links.saved_key(job_id)]
                    await self._drop_saved(keys=keys, client=pipe)
                dropped += sum(map(int, await pipe.execute()))
        if dropped:
            logger.info("deleted the checkpoints of %d waits no longer live", dropped)
        return dropped

    async def _unqueued(self, job_ids: list[str]) -> list[tuple[str, str]]:
        """The job id and step of each live wait among `job_ids` neither parked nor with its
        link in SAQ's queue (SAQ lost it)."""
        links = self.links
        async with links.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(links.wait_key(job_id), "step")
            steps = await pipe.execute()
        live = [
            (job_id, step.decode()) for job_id, step in zip(job_ids, steps, strict=True) if step
        ]
        return [
            link
            for link, (queued, parked) in zip(live, await links.places(live), strict=True)
            if queued is None and parked is None
        ]

    async def _mend_one(self, job_id: str, step: int) -> int:
        """Enqueue the live link again, from the state its wait's records keep, or, a link of
        an earlier version, from the one its SAQ record carries."""
        links = self.links
        link_id = links.link_id(job_id, step)
        stored = links.queue.deserialize(await links.redis.get(link_id))
        earlier = {} if stored is None or stored.kwargs is None else stored.kwargs
        kept = bool(await links.redis.exists(links.saved_key(job_id)))
        carried_state = Kept.carried_by(earlier, kept)
        state = AS_KEPT if carried_state is None else carried_state.arguments()
        restarted = state == AS_KEPT and not kept
        args: list[str | int] = [job_id, step, step, *state, "0"]
        done = await self._mend(keys=[*links.wait_keys(job_id), link_id], args=args)
        if done:
            logger.warning(
                "job %s: its next poll was lost from the queue; enqueued it again%s",
                job_id,
                " (from the start: its checkpoint was lost too)" if restarted and step else "",
            )
        return int(done)

"""`Rescue`: a worker's upkeep of the queue's links, by Redis's clock alone. It moves the links
due into SAQ's queue (`Links.release_due`, every `TICK` seconds: SAQ's scheduler would move
them by the worker's own clock), and hands on each poll link whose worker died, or stopped
running it, within `RESCUED_WITHIN` seconds, all such links at once. (SAQ's sweep takes a dead
worker's jobs one at a time, 5 s each, judging them stuck by the sweeping worker's own clock;
links have no SAQ `timeout`, so it leaves them alone.)

Each worker holds a lease in Redis, `worker:<token>` (under `jobpoll:<queue name>:`), renewed
every `ROUND` seconds and lasting `LEASE`; each link, as it begins, notes its worker's token and
the time (Redis's) in its wait's record (`runner`, `begun`: `_saq_links`). About every `ROUND`
seconds one worker (the `rescuing` lock) reads SAQ's `active` list and, in one pipeline, hands
on each link in it that is *stale*:

- live, begun by a worker whose lease lapsed: dead, or its event loop stalled for `LEASE`;
- live, begun more than `poll_timeout + LEASE` ago: no run lasts `poll_timeout`
  (`SaqWaits.poll` bounds it), so its worker could not tell SAQ it ended (Redis full, say);
- not begun (dequeued by a worker that died at once), or no longer live (handed over, SAQ's
  record of its end never written), `LEASE` seconds after a round first saw it (`unbegun`).

To hand a live link on is a hand-over without a poll: the next link, from the state the wait's
records keep (its checkpoint, and its due time, so that its wait's deadline leaves out the time
lost, `SaqWaits.poll`), is enqueued due now, in the script that checks the stale one is still
in `active` as it was read and takes it out. A worker that was only slow finds its link
superseded, as after SAQ's sweep. A link no longer live is only taken out of `active`
and `incomplete`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

import attrs
from redis.asyncio.client import Pipeline
from saq import Job as SaqJob

from jobpoll._saq_links import AS_KEPT, LINK_TTL, POLL_FUNCTION, Kept, Links
from jobpoll._saq_redis import RedisGuard, outage_of
from jobpoll._saq_scripts import KEEP, LIVE, PARK

logger = logging.getLogger("jobpoll")

#: Seconds a worker's lease lasts unless renewed: a link begun by a worker silent for as long
#: is handed on.
LEASE = 8.0
#: Seconds between two renewals of a worker's lease, and about between two rescue rounds.
ROUND = 2.0
#: Seconds between two moves of the links due into SAQ's queue, by each worker: a wait's poll
#: starts about this late at most (with every worker busy, later), small beside the seconds
#: between two polls; each move is one script call, which finds nothing due in a quiet queue.
TICK = 0.25
#: The most seconds from a worker's death to its links' being enqueued again: its lease lapses
#: (`LEASE`), the next round comes (`ROUND`, with its jitter) and, for a link it had not begun,
#: the round that first saw it came as late.
RESCUED_WITHIN = 15.0
#: SAQ ids read from Redis at a time.
_BATCH = 1000

# KEYS: as `Links.wait_keys`, then the stale link's SAQ id and SAQ's `active`; ARGV: as the
# scripts that move a wait on take them (`_saq_scripts`), then the stale link's record as read
# and its runner as read ('').
_HAND_ON = (
    LIVE
    + """
if (redis.call('HGET', KEYS[1], 'runner') or '') ~= ARGV[9] then return 0 end
if redis.call('GET', KEYS[6]) ~= ARGV[8] then return 0 end
if redis.call('LREM', KEYS[7], 0, KEYS[6]) == 0 then return 0 end
redis.call('ZREM', KEYS[4], KEYS[6])
redis.call('EXPIRE', KEYS[6], LINK_TTL)
""".replace("LINK_TTL", str(LINK_TTL))
    + KEEP
    + PARK
    + "return 1"
)

# KEYS: the wait's record, the link's SAQ id, SAQ's `active` and `incomplete`; ARGV: the
# link's step, its record as read.
_DROP = """
if redis.call('HGET', KEYS[1], 'step') == ARGV[1] then return 0 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 0 end
if redis.call('LREM', KEYS[3], 0, KEYS[2]) == 0 then return 0 end
redis.call('ZREM', KEYS[4], KEYS[2])
redis.call('EXPIRE', KEYS[2], LINK_TTL)
return 1
""".replace("LINK_TTL", str(LINK_TTL))


@attrs.frozen
class ActiveLink:
    """A poll link in SAQ's `active` list, as read: its SAQ id and record (as stored), its
    wait's job id, step and kwargs; whether it is its wait's live link and, if so, the worker
    that began it (None: not begun), when (Redis's clock) and whether that worker's lease
    is held; whether the wait's records keep a checkpoint."""

    saq_id: str
    record: bytes
    job_id: str
    step: int
    kwargs: dict[str, Any]
    live: bool
    runner: str | None
    begun: float | None
    alive: bool
    kept: bool


@attrs.frozen
class Active:
    """SAQ's `active` list at Redis's time `now`: its poll links, its other jobs (by SAQ id,
    None for a record gone) and when a round first saw each link not begun or not live."""

    now: float
    links: list[ActiveLink]
    others: dict[str, SaqJob | None]
    first_seen: dict[str, float]

    def stale(self, link: ActiveLink, poll_timeout: float) -> bool:
        """Whether no worker runs `link` any more (module docstring)."""
        if link.live and link.runner is not None:
            overdue = link.begun is not None and self.now - link.begun > poll_timeout + LEASE
            return not link.alive or overdue
        first = self.first_seen.get(link.saq_id)
        return first is not None and self.now - first >= LEASE

    def unbegun(self) -> dict[str, float]:
        """When a round first saw each link not begun or not live, this one included."""
        return {
            link.saq_id: self.first_seen.get(link.saq_id, self.now)
            for link in self.links
            if not (link.live and link.runner is not None)
        }


def lease_key(links: Links, token: str) -> str:
    return f"{links.prefix}worker:{token}"


async def read_active(links: Links) -> Active:
    """SAQ's `active` list with what tells a stale link (a few pipelined reads)."""
    polls, others = await _active_jobs(links)
    async with links.redis.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.hgetall(links.prefix + "unbegun")
        for _saq_id, _record, kwargs in polls:
            pipe.hmget(links.wait_key(str(kwargs["job_id"])), ["step", "runner", "begun"])
            pipe.exists(links.saved_key(str(kwargs["job_id"])))
        (seconds, micros), seen, *read = await pipe.execute()
    fields, kept = read[::2], read[1::2]
    alive = await _alive(links, {runner.decode() for _step, runner, _begun in fields if runner})
    found = [
        _active_link(saq_id, record, kwargs, (*wait, bool(saved)), alive)
        for (saq_id, record, kwargs), wait, saved in zip(polls, fields, kept, strict=True)
    ]
    first_seen = {key.decode(): float(value) for key, value in seen.items()}
    return Active(seconds + micros / 1e6, found, others, first_seen)


async def _active_jobs(
    links: Links,
) -> tuple[list[tuple[str, bytes, dict[str, Any]]], dict[str, SaqJob | None]]:
    """The poll links in SAQ's `active` list (SAQ id, record, kwargs), and its other jobs."""
    redis, queue = links.redis, links.queue
    listed = redis.lrange(queue.namespace("active"), 0, -1)
    ids = [saq_id.decode() for saq_id in await cast("Awaitable[list[bytes]]", listed)]
    records: list[bytes | None] = []
    for start in range(0, len(ids), _BATCH):
        records += await redis.mget(ids[start : start + _BATCH])
    polls: list[tuple[str, bytes, dict[str, Any]]] = []
    others: dict[str, SaqJob | None] = {}
    for saq_id, record in zip(ids, records, strict=True):
        job = queue.deserialize(record)
        if record is not None and job is not None and job.function == POLL_FUNCTION and job.kwargs:
            polls.append((saq_id, record, job.kwargs))
        else:
            others[saq_id] = job
    return polls, others


async def _alive(links: Links, runners: set[str]) -> set[str]:
    """Those of `runners` whose lease is held."""
    ordered = sorted(runners)
    async with links.redis.pipeline(transaction=False) as pipe:
        for runner in ordered:
            pipe.exists(lease_key(links, runner))
        held = await pipe.execute()
    return {runner for runner, count in zip(ordered, held, strict=True) if count}


def _active_link(
    saq_id: str,
    record: bytes,
    kwargs: dict[str, Any],
    wait: tuple[bytes | None, bytes | None, bytes | None, bool],
    alive: set[str],
) -> ActiveLink:
    """The link as read: its SAQ record's, then its wait's (`step`, `runner`, `begun`, and
    whether a checkpoint is kept)."""
    step, runner, begun, kept = wait
    live = step is not None and step.decode() == str(kwargs["step"])
    owner = runner.decode() if live and runner else None
    return ActiveLink(
        saq_id,
        record,
        str(kwargs["job_id"]),
        int(kwargs["step"]),
        kwargs,
        live,
        owner,
        float(begun) if owner and begun else None,
        owner in alive,
        kept,
    )


@attrs.define(slots=False, kw_only=True)
class Rescue:
    """One worker's lease, and the rounds that hand on stale links (module docstring)."""

    links: Links
    #: This worker's name in the records of the links it begins.
    token: str = attrs.field(factory=lambda: uuid.uuid4().hex)

    def __attrs_post_init__(self) -> None:
        redis = self.links.redis
        self._hand_on = redis.register_script(self.links.maker + _HAND_ON)
        self._drop = redis.register_script(_DROP)
        self._failing = False

    async def renew(self) -> None:
        """Hold (or renew) this worker's lease for `LEASE` seconds."""
        await self.links.redis.set(lease_key(self.links, self.token), 1, px=int(LEASE * 1000))

    async def forever(self) -> None:
        """Every `TICK` seconds or so, move the links due into SAQ's queue; every `ROUND`,
        renew the lease and run a round if no other worker did lately. A failure is logged
        once, until the upkeep works again; Redis away, not at all (the worker logs the
        outage, `_saq_outage`)."""
        lock = self.links.prefix + "rescuing"
        clock = asyncio.get_running_loop().time
        next_round = clock() + ROUND
        while True:
            await asyncio.sleep(TICK * (0.8 + 0.4 * random.random()))
            try:
                await self.links.release_due()
                if clock() >= next_round:
                    next_round = clock() + ROUND * (0.8 + 0.4 * random.random())
                    await self.renew()
                    if await self.links.redis.set(lock, self.token, nx=True, px=int(ROUND * 800)):
                        await self.round()
            except Exception as exc:  # Redis away (logged as an outage): the next tick tries
                if not self._failing and not outage_of(exc):
                    logger.exception("the upkeep of the queue's links failed")
                self._failing = True
            else:
                self._failing = False

    async def round(self) -> int:
        """Hand on every stale link of SAQ's `active` list; how many live ones were."""
        links = self.links
        active = await read_active(links)
        first_seen = active.unbegun()
        active = attrs.evolve(active, first_seen=first_seen)
        stale = [link for link in active.links if active.stale(link, links.poll_timeout)]
        handed = 0
        if stale:
            async with links.redis.pipeline(transaction=False) as pipe:
                for link in stale:
                    await self._enqueue(link, pipe)
                done = await pipe.execute()
            handed = sum(
                int(flag) for link, flag in zip(stale, done, strict=True) if link.live and flag
            )
        async with links.redis.pipeline(transaction=True) as pipe:
            pipe.delete(links.prefix + "unbegun")
            if first_seen:
                pipe.hset(links.prefix + "unbegun", mapping=first_seen)
            await pipe.execute()
        if handed:
            logger.warning("%d polls of workers gone (or silent) enqueued again", handed)
        return handed

    async def _enqueue(self, link: ActiveLink, pipe: Pipeline) -> None:
        """Add to `pipe` the script that hands `link` on (or drops it, no longer live)."""
        links, queue = self.links, self.links.queue
        if not link.live:
            keys = [links.wait_key(link.job_id), link.saq_id, queue.namespace("active")]
            keys.append(queue.namespace("incomplete"))
            await self._drop(keys=keys, args=[link.step, link.record], client=pipe)
            return
        # The state its wait's records keep, or the one a link of an earlier version carries.
        carried = Kept.carried_by(link.kwargs, link.kept)
        state = AS_KEPT if carried is None else carried.arguments()
        args: list[str | int | bytes] = [link.job_id, link.step, link.step + 1, *state, "0"]
        args += [link.record, link.runner or ""]
        keys = [*links.wait_keys(link.job_id), link.saq_id, queue.namespace("active")]
        await self._hand_on(keys=keys, args=args, client=pipe)


async def mend_forever(
    links: Links, guard: RedisGuard, mend: Callable[[], Awaitable[int]], interval: float
) -> None:
    """Every `interval` seconds or so, one worker at a time (a lock in Redis) `mend`s the
    queue; each looks whether Redis lost the queue's data (`RedisGuard`, logged at ERROR
    once)."""
    lock = links.prefix + "mending"
    while True:
        await asyncio.sleep(interval * (0.8 + 0.4 * random.random()))
        try:
            await guard.current_epoch()
            if await links.redis.set(lock, "1", nx=True, px=int(interval * 800)):
                await mend()
        except Exception as exc:
            if not outage_of(exc.__cause__ or exc):  # Redis away: logged as an outage
                logger.exception("mending the queue's waits failed")

"""`QueueOverview`: what an operator sees of one SAQ queue's waits (`SaqWaits.overview()`,
`jobpoll queue`), read from jobpoll's records and SAQ's own, changing nothing.

Each live wait (its record has a `step`) is where its live link is in SAQ's records:

- **in flight**: in SAQ's `active` list, a worker polling it; **stuck** instead once
  `_saq_rescue`'s rule says no worker runs it any more (its worker's lease lapsed, say): the
  next rescue round hands it on.
- **due**: queued, or parked (or scheduled) until a time now passed: waiting for a worker.
- **scheduled**: parked, its next poll is later (`_saq_links`: it has no SAQ job till then).
- **lost**: in none of SAQ's queues; `SaqWaits.mend` enqueues it again.

An outcome kept (`outcome_ttl`) is **delivered** once the `on_outcome` function returned for
it (with no `on_outcome`, once kept: nothing is left to do), **undelivered** until then: on
its way, retried, or given up after `outcome_retries`. (`SaqWaits.undelivered()` lists the
given-up ones only, those an operator can `redeliver`: this count is of every outcome not
delivered yet.)

The cost is bounded by the queue's size, never a `KEYS`: one `SCAN` call per 1,000 keys of
the database, and per wait record two commands (four while it waits), pipelined 1,000 at a
time; plus SAQ's `active` list and those links' records. The waits move while they are read,
so the counts are of about one moment; a link seen lost is looked at a second time, as a
hand-over may have moved it between two reads.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Awaitable, Mapping
from typing import Any, cast

import attrs

from jobpoll._saq_links import Links
from jobpoll._saq_rate import FleetRate
from jobpoll._saq_rescue import read_active


@attrs.frozen(kw_only=True)
class QueueOverview:
    """A queue's waits and the fleet's rate, at about one moment (see `SaqWaits.overview`).

    Attributes:
        queue: the SAQ queue's name.
        live: the waits not over: `due + scheduled + in_flight + stuck + lost`.
        due, scheduled, in_flight, stuck, lost: where the live waits are (module docstring).
        delivered: the outcomes kept whose `on_outcome` call returned.
        undelivered: the outcomes kept whose `on_outcome` call has not returned (yet),
            given up or not (`SaqWaits.undelivered()` lists the given-up ones).
        oldest: seconds since the oldest live wait was submitted (None: no live wait, or
            only waits submitted before jobpoll recorded when).
        rate: the polls a second the fleet holds to, learned from the service's refusals
            (None: not held to any rate).
        rate_held_for: seconds a `Retry-After` still holds that rate from growing (0: none).
        lined_up_for: seconds until the last poll handed over for want of a turn under that
            rate is due (0: none waits for a turn).
    """

    queue: str
    live: int
    due: int
    scheduled: int
    in_flight: int
    stuck: int
    lost: int
    delivered: int
    undelivered: int
    oldest: float | None
    rate: float | None
    rate_held_for: float
    lined_up_for: float

    def to_dict(self) -> dict[str, Any]:
        """The overview as a JSON-ready dict, keyed by the attributes' names."""
        return attrs.asdict(self)


def place(
    link: str,
    score: float | None,
    active: Mapping[str, bool],
    now: float,
    parked: float | None = None,
) -> str:
    """Where a live wait is, by its live link's SAQ id, its score in SAQ's `incomplete` set
    (None: not there; 0: queued; else when it is scheduled for: `-t` by a link of an earlier
    version, `t` by SAQ retrying it), SAQ's `active` links (each with whether it is stuck),
    Redis's time now and when the wait is due if it is parked (None: it is not)."""
    if parked is not None:
        return "scheduled" if parked > now else "due"
    if link in active:
        return "stuck" if active[link] else "in_flight"
    if score is None:
        return "lost"
    return "scheduled" if abs(score) > now else "due"


async def read_overview(links: Links) -> QueueOverview:
    """Read the overview of `links`' queue (module docstring: how, and at what cost)."""
    seconds, micros = await links.redis.time()
    now = seconds + micros / 1e6
    active = await _active(links)
    tally: Counter[str] = Counter()
    oldest = math.inf
    async for job_ids in links.waits():
        oldest = min(oldest, await _tally(links, job_ids, active, now, tally))
    rate, held_for, lined_up_for = await _fleet_rate(links)
    places = {name: tally[name] for name in ("due", "scheduled", "in_flight", "stuck", "lost")}
    return QueueOverview(
        queue=links.queue.name,
        live=sum(places.values()),
        **places,
        delivered=tally["delivered"],
        undelivered=tally["undelivered"],
        oldest=None if oldest == math.inf else max(0.0, now - oldest),
        rate=rate,
        rate_held_for=held_for,
        lined_up_for=lined_up_for,
    )


async def _active(links: Links) -> dict[str, bool]:
    """The SAQ ids in the queue's `active` list, each with whether it is stuck: a link by
    `_saq_rescue`'s rule, another job by SAQ's (its record gone counts: SAQ's sweep drops it)."""
    active = await read_active(links)
    stuck = {saq_id: job is None or job.stuck for saq_id, job in active.others.items()}
    for link in active.links:
        stuck[link.saq_id] = active.stale(link, links.poll_timeout)
    return stuck


async def _tally(
    links: Links, job_ids: list[str], active: Mapping[str, bool], now: float, tally: Counter[str]
) -> float:
    """Count the records of the waits `job_ids` into `tally`; the earliest `since` of the live
    ones."""
    async with links.redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(links.wait_key(job_id), ["step", "since", "delivered"])
            pipe.hexists(links.wait_key(job_id), "result")
        replies = await pipe.execute()
    live: list[tuple[str, str]] = []
    oldest = math.inf
    for job_id, (step, since, delivered), kept in zip(
        job_ids, replies[::2], replies[1::2], strict=True
    ):
        if step is not None:
            live.append((job_id, step.decode()))
            if since is not None:
                oldest = min(oldest, float(since))
        elif kept:
            tally["delivered" if delivered else "undelivered"] += 1
    lost = []
    for (job_id, step), (score, parked) in zip(live, await links.places(live), strict=True):
        where = place(links.link_id(job_id, step), score, active, now, parked)
        if where == "lost":
            lost.append(job_id)
        else:
            tally[where] += 1
    tally.update(await _second_look(links, lost, active, now))
    return oldest


async def _second_look(
    links: Links, job_ids: list[str], active: Mapping[str, bool], now: float
) -> Counter[str]:
    """Where the waits seen lost are, once their records are read again: a hand-over between
    the two reads of the first look moved them on."""
    places: Counter[str] = Counter()
    if not job_ids:
        return places
    async with links.redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(links.wait_key(job_id), "step")
        steps = await pipe.execute()
    again = [(job_id, step.decode()) for job_id, step in zip(job_ids, steps, strict=True) if step]
    for (job_id, step), (score, parked) in zip(again, await links.places(again), strict=True):
        places[place(links.link_id(job_id, step), score, active, now, parked)] += 1
    return places


async def _fleet_rate(links: Links) -> tuple[float | None, float, float]:
    """The fleet's shared rate (None: none), the seconds a `Retry-After` holds it, and the
    seconds until the last place given in the line of polls waiting for a turn
    (`_saq_rate`'s `later`), each on Redis's clock."""
    rate = FleetRate(None, time.monotonic)  # no ceiling of this process: the fleet's own
    await links.read_rate(rate)
    now = rate.now()
    polls_a_second = rate.control.rate_at(now)
    field = links.redis.hget(links.rate_keys[0], "later")
    later = await cast("Awaitable[bytes | None]", field)
    try:
        lined_up_until = -math.inf if later is None else float(later)
    except ValueError:  # not a time: nothing is lined up
        lined_up_until = -math.inf
    return (
        None if polls_a_second == math.inf else polls_a_second,
        max(0.0, rate.control.hold_until - now),
        max(0.0, lined_up_until - now),
    )

"""The rate every worker of a SAQ queue shares (`_saq_rate`), read and written through a real
Redis by several workers' mirrors in one test. Each mirror's own clock stands still, so what
it computes depends only on what Redis answered; the rates are slow (turns tens of seconds
apart), so what Redis decides does not depend on how fast the test runs."""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

if not os.environ.get("CI"):
    pytest.importorskip("saq", reason="the saq extra is not installed (pip install '.[saq]')")

from saq import Queue

from jobpoll import PollPolicy, RateLimited, ServiceUnavailable
from jobpoll._gate import INITIAL_WINDOW
from jobpoll._rate import BACKOFF, BETA, FIRST_RATE, MAX_HOLD
from jobpoll._saq_links import Links
from jobpoll._saq_poll import Link
from jobpoll._saq_rate import (
    HORIZON,
    READ,
    SLOW_START_SECONDS,
    SLOW_START_WAIT,
    FleetRate,
    Turn,
)
from jobpoll._state import RateState

pytestmark = pytest.mark.timeout(60)

#: The longest a place in line may be away (a policy's `max_interval`).
LONGEST = 3600.0


class Fleet:
    """One queue's records, and the workers' mirrors of its shared rate."""

    def __init__(self, links: Links, max_rate: float | None, workers: int) -> None:
        self.links = links
        self.redis = links.redis
        self.key = links.prefix + "rate"
        self.rates = [FleetRate(max_rate, lambda: 0.0) for _ in range(workers)]
        self.job_id = str(uuid.uuid4())

    async def turn(self, rate: FleetRate) -> Turn:
        begun = await self.links.begin(self.job_id, 0, rate, LONGEST, runner="worker")
        assert begun is not None
        return begun[0]

    async def shared(self) -> dict[str, float]:
        raw = await self.redis.hgetall(self.key)
        return {name.decode(): float(value) for name, value in raw.items()}

    async def accepted_every(self, seconds: float, count: int) -> None:
        """`count` answers accepted `seconds` apart, the last one now (on Redis's clock)."""
        now_s, now_us = await self.redis.time()
        now = now_s + now_us / 1e6
        answers = self.links.prefix + "answers"
        await self.redis.rpush(answers, *(f"{now - k * seconds:.6f}" for k in range(count)))
        await self.redis.hincrby(self.key, "answered", count)

    async def refused(self, rate: FleetRate, error: RateLimited, sent_in: int) -> bool:
        """As a worker's link does when its poll sent in cut `sent_in` is refused."""
        if sent_in == rate.control.cuts:
            await self.links.read_rate(rate)
        cut = rate.refused(error, sent_in)
        return cut is not None and await self.links.cut_rate(cut)


@contextlib.asynccontextmanager
async def fleet(
    redis_url: str, workers: int = 2, max_rate: float | None = None
) -> AsyncIterator[Fleet]:
    queue = Queue.from_url(redis_url, name="r" + uuid.uuid4().hex[:8])
    links = Links(queue=queue, poll_timeout=30.0, outcome_ttl=60.0)
    shared = Fleet(links, max_rate, workers)
    try:
        assert await links.submit([shared.job_id], None) == [True]  # its link 0 is live
        yield shared
    finally:
        await queue.disconnect()


async def test_a_redis_without_the_state_starts_unlimited(redis_url: str) -> None:
    """With no shared state (a first start, or Redis wiped), every worker's poll takes its turn
    at once and nothing is written but the slow start's count; once wiped (or garbled), a
    fleet held to a rate is held to none."""
    async with fleet(redis_url) as shared:
        for rate in shared.rates:
            assert await shared.turn(rate) == Turn(0.0, True, 0)
            assert not rate.control.limited
            assert rate.spacing() == 0.0
        assert set(await shared.shared()) == {"started", "sent"}
        await shared.accepted_every(10.0, 10)
        assert await shared.refused(shared.rates[0], RateLimited(429), 0)
        assert "rate" in await shared.shared()
        await shared.redis.delete(shared.key, shared.links.prefix + "answers")
        for rate in shared.rates:
            assert await shared.turn(rate) == Turn(0.0, True, 0)
            assert not rate.control.limited
        await shared.redis.hset(shared.key, mapping={"rate": "fast", "cuts": "x"})
        for rate in shared.rates:  # a state that does not read as one is none
            assert await shared.turn(rate) == Turn(0.0, True, 0)
            assert not rate.control.limited


async def test_a_fleet_starts_slow_until_its_first_refusal(redis_url: str) -> None:
    """Before any refusal, the fleet's polls sent may run `INITIAL_WINDOW` ahead of twice its
    accepted answers; a poll over that is told to ask again `SLOW_START_WAIT` later. The
    window ends with the first refusal (the rate takes over), or `SLOW_START_SECONDS` after
    the fleet's first poll."""
    async with fleet(redis_url) as shared:
        a, b = shared.rates
        for k in range(INITIAL_WINDOW):
            assert (await shared.turn(a if k % 2 else b)).taken
        over = await shared.turn(a)
        assert (over.taken, over.again) == (False, True)
        assert over.delay == pytest.approx(SLOW_START_WAIT, abs=0.01)
        await shared.accepted_every(0.01, 3)  # three answers: six more polls
        assert all([(await shared.turn(b)).taken for _ in range(6)])
        assert (await shared.turn(b)).again
        started = (await shared.shared())["started"]
        await shared.redis.hset(shared.key, "started", repr(started - SLOW_START_SECONDS))
        assert all([(await shared.turn(a)).taken for _ in range(20)])  # its time is over
    async with fleet(redis_url) as shared:
        a, b = shared.rates
        for _ in range(INITIAL_WINDOW):
            assert (await shared.turn(a)).taken
        await shared.accepted_every(0.5, 4)
        assert await shared.refused(a, RateLimited(429), 0)
        turns = [await shared.turn(b) for _ in range(40)]
        assert all(turn.sent_in == 1 for turn in turns)  # the rate decides, not the window
        assert turns[-1].delay > SLOW_START_WAIT


async def test_a_refusal_seen_by_one_worker_slows_the_other(redis_url: str) -> None:
    """Worker a's refusal cuts the shared rate to `BETA` of what the whole fleet was accepted;
    worker b, which saw nothing refused, takes its next turn under that rate. (The first
    refusal measures nothing of a fleet that sent little before it: it starts low.)"""
    async with fleet(redis_url) as shared:
        a, b = shared.rates
        assert (await shared.turn(b)).taken
        assert await shared.refused(a, RateLimited(429), 0)
        assert "peak" not in await shared.shared()
        await shared.accepted_every(2.0, 10)  # the fleet's answers since: one each 2 s
        assert await shared.refused(a, RateLimited(429), 1)
        state = await shared.shared()
        assert state["peak"] == pytest.approx(0.5)
        assert state["rate"] == pytest.approx(BETA * 0.5)
        assert state["cuts"] == 2
        # The next turn is one spacing (2.2 s) after the cut: b's poll is handed over to it.
        turn = await shared.turn(b)
        assert not turn.taken
        assert HORIZON < turn.delay <= 1 / (BETA * 0.5)
        assert turn.sent_in == 2
        assert b.control.state == a.control.state
        assert b.spacing() == pytest.approx(1 / (BETA * 0.5), rel=0.01)


async def test_a_refusal_of_a_poll_sent_before_the_last_cut_cuts_nothing(redis_url: str) -> None:
    """b's poll, sent before a's cut, is refused: the same storm, it cuts nothing (b learns of
    the cut from Redis) but its `Retry-After` holds the shared rate; a refusal of a poll sent
    since the cut cuts again (halving, with nothing accepted since): a worker sees only its
    own answers, so it does not weigh refusals for noise as a client does."""
    async with fleet(redis_url) as shared:
        a, b = shared.rates
        assert (await shared.turn(b)).sent_in == 0
        await shared.accepted_every(0.1, 10)  # ten a second, just now: what the cut measures
        assert await shared.refused(a, RateLimited(429), 0)
        cut = await shared.shared()
        assert not await shared.refused(b, ServiceUnavailable(503, retry_after=600.0), 0)
        held = await shared.shared()
        assert (held["rate"], held["cuts"]) == (cut["rate"], 1)
        assert held["hold_until"] == pytest.approx(b.now() + MAX_HOLD, abs=0.01)  # at most
        assert await shared.refused(b, RateLimited(429), 1)  # sent since the cut: it cuts
        again = await shared.shared()
        assert again["cuts"] == 2
        assert again["rate"] == pytest.approx(BACKOFF * cut["rate"])  # held: no growth
        assert again["peak"] == cut["peak"]
        await shared.turn(a)
        assert a.control.state == RateState(
            rate=again["rate"], peak=again["peak"], cut_at=again["cut_at"]
        )


async def test_the_ceiling_holds_across_workers(redis_url: str) -> None:
    """With `max_rate` (one poll each 20 s), the first turn is at once, and each one after it
    whichever worker takes it, 20 s after the one before: handed over unpolled to then."""
    async with fleet(redis_url, workers=3, max_rate=0.05) as shared:
        first, *others = shared.rates
        assert (await shared.turn(first)).taken
        start = (await shared.shared())["last"]
        for index, rate in enumerate([*others, first], start=1):
            turn = await shared.turn(rate)
            assert not turn.taken
            assert rate.spacing() == pytest.approx(20.0)
            state = await shared.shared()
            assert state["later"] - start == pytest.approx(20.0 * index, abs=1e-5)
            assert turn.delay <= 20.0 * index
        assert "rate" not in await shared.shared()  # a ceiling, not a rate learned


async def test_replies_out_of_order_count_each_answer_once(redis_url: str) -> None:
    """A worker's links run their scripts side by side: two replies read with the same answers
    counted, or one that Redis ran before the newest the mirror took, come back in any order.
    Each accepted answer counts once (else the fleet's rate is measured as many times what it
    was, and a cut sets it far above the limit), and an older reply takes nothing back."""
    async with fleet(redis_url) as shared:
        a, b = shared.rates
        read = shared.redis.register_script(READ)
        keys = [shared.key, shared.links.prefix + "answers"]
        assert await shared.refused(a, RateLimited(429), 0)  # a rate is held: answers read
        older = await read(keys=keys, args=[a.seen])
        await shared.accepted_every(0.1, 10)  # ten a second, just now
        first, second = [await read(keys=keys, args=[a.seen]) for _ in range(2)]
        a.mirror(second)
        a.mirror(first)
        a.mirror(older)
        assert len(a.control.answers) == 10
        assert a.control.measured(a.now()) == pytest.approx(10.0)
        await shared.links.read_rate(b)
        assert await shared.refused(b, RateLimited(429), 1)  # b cuts: a's replies are older
        cut = await shared.shared()
        assert cut["peak"] == pytest.approx(10.0)
        assert a.mirror(await read(keys=keys, args=[a.seen]))[1] == 2
        a.mirror(first)  # ran before the cut
        assert (a.control.cuts, a.control.state) == (2, b.control.state)


async def test_a_fleets_first_cut_goes_by_its_answers_since_its_first_poll(
    redis_url: str,
) -> None:
    """A first refusal with too little measured (thirty answers at once) sets the rate to the
    fleet's accepted answers over the time since its first poll, as one client's own do, not
    to one a second: a thousand links in line at one a second would take minutes."""
    async with fleet(redis_url) as shared:
        a, b = shared.rates
        assert (await shared.turn(b)).taken  # the fleet's first poll
        await shared.redis.hset(shared.key, "started", repr(b.now() - 10.0))
        await shared.accepted_every(0.01, 30)
        assert await shared.refused(a, RateLimited(429), 0)
        state = await shared.shared()
        assert "peak" not in state
        assert state["rate"] == pytest.approx(30 / 10.0, rel=0.01)


async def test_places_in_line_follow_the_rate_as_it_grows(redis_url: str) -> None:
    """A poll whose turn is too far away takes a place in line, one spacing after the last
    place given, at the rate the rules give that place (doubling each second after a first
    cut, here): links in line come back as fast as the rate will let them by then, not at
    the rate of the moment they were handed over."""
    async with fleet(redis_url) as shared:
        a, b = shared.rates
        assert (await shared.turn(b)).taken
        await shared.redis.hset(shared.key, "started", repr(b.now() - 100.0))
        await shared.accepted_every(2.0, 10)  # one each 2 s: the first cut measures nothing
        assert await shared.refused(a, RateLimited(429), 0)
        await shared.accepted_every(0.0, 1)  # accepted since: the rate grows from now
        assert (await shared.turn(b)).taken  # one spacing after the cut, within `HORIZON`
        places = []
        for _ in range(3):
            assert not (await shared.turn(b)).taken
            places.append((await shared.shared())["later"])
        first, second, third = places
        assert b.control.state.rate == pytest.approx(1.0)  # cut to one a second
        rate_at = b.control.rate_at
        assert second - first == pytest.approx(1 / rate_at(first), abs=1e-4)
        assert third - second == pytest.approx(1 / rate_at(second), abs=1e-4)
        assert 2.0 < rate_at(first) < rate_at(second)


async def test_a_cut_voids_the_turns_taken_before_it(redis_url: str) -> None:
    """Turns taken ahead at the old rate, by polls asleep until them, are void after a cut
    (those polls read the fleet's state before they send, `_saq_poll`): the fleet's next turn
    is one spacing at the new rate after the cut, as one client's next request is, not after
    the last of them. Kept, they held the fleet's next turn up to `HORIZON` away, for polls
    that did not send at them either: a second of nothing sent after each cut."""
    async with fleet(redis_url) as shared:
        a, b = shared.rates
        await shared.accepted_every(0.1, 10)  # ten a second, just now
        assert await shared.refused(a, RateLimited(429), 0)
        ahead = [await shared.turn(b) for _ in range(6)]
        assert all(turn.taken and turn.sent_in == 1 for turn in ahead)
        assert await shared.refused(a, RateLimited(429), 1)  # nothing accepted since: halved
        cut = await shared.shared()
        assert cut["last"] >= cut["cut_at"]  # the cut's own time on Redis's clock
        turn = await shared.turn(b)
        assert turn.sent_in == 2
        assert b.spacing() == pytest.approx(2 / (BETA * 10.0), rel=0.01)
        assert turn.taken
        assert 0.0 <= turn.delay <= b.spacing() + 1e-6  # not after the turns held before
        assert (await shared.shared())["last"] >= cut["last"] + b.spacing() - 1e-6


async def test_a_first_cut_after_redis_lost_its_data_counts_no_answers_from_before(
    redis_url: str,
) -> None:
    """Redis lost its data (a flush, a restart without persistence): its count of answers
    starts again at nothing. A first refusal then, with nothing accepted since, starts at
    `FIRST_RATE`, not at the answers counted before the loss as if accepted in a second."""
    async with fleet(redis_url) as shared:
        a = shared.rates[0]
        assert (await shared.turn(a)).taken
        await shared.accepted_every(2.0, 300)  # long ago, mostly: they measure nothing
        await shared.links.read_rate(a)
        assert a.seen == 300
        await shared.redis.delete(shared.key, shared.links.prefix + "answers")
        assert (await shared.turn(a)).taken  # the first poll since
        assert await shared.refused(a, RateLimited(429), 0)
        assert (await shared.shared())["rate"] == pytest.approx(FIRST_RATE)


async def test_after_a_cut_the_turns_polls_take_anew_keep_the_ceiling(redis_url: str) -> None:
    """Worker b took turns up to `HORIZON` ahead at the ceiling (five a second), and its polls
    sleep until them; worker a's refusal cuts the rate. b's polls read the cut as they wake
    and take turns anew: the turns sent at after the cut, a's and b's, are never closer than
    the ceiling's spacing, and the first is one spacing after the cut (any poll sent at a turn
    from before it was sent by then)."""
    async with fleet(redis_url, max_rate=5.0) as shared:
        a, b = shared.rates
        for _ in range(4):
            assert (await shared.turn(b)).taken
        assert await shared.refused(a, RateLimited(429), 0)
        cut = (await shared.shared())["last"]
        await shared.links.read_rate(b)  # b's polls wake, read the cut
        assert b.control.cuts == 1
        taken = []
        for rate in (a, b, a, b):
            turn = await shared.turn(rate)
            if turn.taken:
                taken.append((await shared.shared())["last"])
        assert taken
        assert taken[0] - cut >= 1 / 5.0 - 1e-6
        gaps = [later - earlier for earlier, later in itertools.pairwise(taken)]
        assert all(gap >= 1 / 5.0 - 1e-6 for gap in gaps), taken


def link_of(shared: Fleet, rate: FleetRate, sleep: Callable[[float], Awaitable[None]]) -> Link:
    """A link of the fleet's wait, run by the worker of `rate`, whose sleeps are `sleep`
    (no client, no outcomes: it is only asked to wait for its turn)."""
    policy = PollPolicy(sleep=sleep, clock=rate.now, wall_clock=rate.now)
    return Link(shared.links, None, policy, None, rate, shared.job_id, 0, "w")  # type: ignore[arg-type]


async def test_a_poll_asleep_through_a_cut_takes_a_turn_anew(redis_url: str) -> None:
    """A poll asleep until its turn reads the fleet's state as it wakes: a cut another
    worker made meanwhile voids that turn (`CUT`), and the poll takes one anew, sent in the
    new cut; at the voided turn it would go out closer to the new turns than the rate
    allows."""
    async with fleet(redis_url, max_rate=10.0) as shared:
        a, b = shared.rates
        assert (await shared.turn(b)).taken  # at once
        turn = await shared.turn(b)  # a tenth of a second away: b's poll sleeps until it
        assert turn.taken
        assert turn.delay > 0
        assert turn.sent_in == 0
        cuts: list[bool] = []

        async def sleep(_: float) -> None:  # while b's poll sleeps, a's poll is refused
            if not cuts:
                cuts.append(await shared.refused(a, RateLimited(429), 0))

        after = await link_of(shared, b, sleep).wait_for(turn, LONGEST)
        assert cuts == [True]
        assert after is not None
        assert after.sent_in == 1


async def test_a_turn_asked_anew_into_a_full_slow_start_waits_in_its_worker(
    redis_url: str,
) -> None:
    """A poll asleep through the loss of the fleet's state (Redis wiped) asks for a turn anew
    and finds the slow start full: it waits in its worker and asks again, as a poll does
    before its first turn, and is not handed over at once (which would spin)."""
    async with fleet(redis_url) as shared:
        a, b = shared.rates
        await shared.accepted_every(0.1, 10)
        assert await shared.refused(a, RateLimited(429), 0)  # nine a second
        await shared.turn(b)
        turn = await shared.turn(b)
        assert turn.taken
        assert turn.delay > 0
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)
            if len(slept) == 1:  # Redis loses the fleet's state; other polls fill its start
                await shared.redis.delete(shared.key, shared.links.prefix + "answers")
                fresh = FleetRate(None, lambda: 0.0)
                for _ in range(INITIAL_WINDOW):
                    assert (await shared.turn(fresh)).taken
            elif len(slept) == 3:  # answers came in: the slow start lets it go
                await shared.accepted_every(0.01, 10)

        after = await link_of(shared, b, sleep).wait_for(turn, LONGEST)
        assert after is not None
        assert after.taken
        assert slept[1:3] == [SLOW_START_WAIT, 2 * SLOW_START_WAIT]


async def test_a_redis_clock_stepped_back_hides_no_cut(redis_url: str) -> None:
    """Redis's clock (`TIME`, the wall clock of its host) stepped back a minute (an NTP step,
    a failover to a replica on another host). Its replies since read as older than the one
    the mirror took before the step; they must still bring the mirror the cuts made since,
    else the worker polls at the rate before the cut until Redis's clock has caught up."""
    async with fleet(redis_url) as shared:
        a, b = shared.rates
        read = shared.redis.register_script(READ)
        keys = [shared.key, shared.links.prefix + "answers"]
        before = list(await read(keys=keys, args=[a.seen]))
        before[0] = f"{float(before[0]) + 60.0:.6f}"  # the reply of a minute ahead
        a.mirror(before)
        await shared.accepted_every(0.1, 10)
        assert await shared.refused(b, RateLimited(429), 0)
        await shared.links.read_rate(a)
        assert a.control.cuts == 1
        assert a.control.state == b.control.state


async def test_answers_restored_with_an_older_count_are_not_counted_twice(redis_url: str) -> None:
    """Redis came back with an older copy of its data (a restart from its append-only file, a
    replica promoted): its count dropped by the three newest answers, the older ones are there
    again. The mirror counted them all already: each still counts once, else the fleet's
    accepted rate is measured twice what it was and the next cut sets it above the limit."""
    async with fleet(redis_url) as shared:
        a, b = shared.rates
        assert await shared.refused(b, RateLimited(429), 0)  # a rate is held: answers read
        await shared.accepted_every(0.1, 10)  # ten a second, just now
        await shared.links.read_rate(a)
        assert len(a.control.answers) == 10
        answers = shared.links.prefix + "answers"
        await shared.redis.lpop(answers, 3)
        await shared.redis.hincrby(shared.key, "answered", -3)
        await shared.links.read_rate(a)
        assert len(a.control.answers) == len(set(a.control.answers)) == 10
        assert a.control.measured(a.now()) == pytest.approx(10.0)


async def test_a_first_cut_counts_no_answers_from_before_the_fleets_first_poll(
    redis_url: str,
) -> None:
    """A fleet ran under a ceiling (no rate learned, none kept: its slow start never began),
    then its workers came back without one. Their first refusal, with nothing accepted since
    their first poll, starts at `FIRST_RATE`, not at the answers of the ceiling's time as if
    accepted in a second."""
    async with fleet(redis_url, max_rate=5.0) as shared:
        assert (await shared.turn(shared.rates[0])).taken
        await shared.accepted_every(2.0, 300)  # under the ceiling, long ago mostly
        freed = FleetRate(None, lambda: 0.0)
        assert (await shared.turn(freed)).taken  # the first poll without a ceiling
        assert "started" in await shared.shared()
        assert await shared.refused(freed, RateLimited(429), 0)
        assert (await shared.shared())["rate"] == pytest.approx(FIRST_RATE)


async def test_a_begin_brings_the_mirror_the_same_state_as_a_read(redis_url: str) -> None:
    """A link's begin (its reply one string of JSON, encoded in Redis) brings a mirror the
    very state a `READ` (values one by one) does: every digit of a rate, a time to the
    microsecond, a count of cuts past a float's exact integers, the answers counted, whatever
    precision Redis's JSON is set to; and none (`{}` in Redis's JSON) as no answers."""
    async with fleet(redis_url) as shared:
        now_s, _now_us = await shared.redis.time()
        state = {
            "rate": "1.2345678901234567",
            "peak": "9.8765432109876543",
            "cut_at": f"{now_s - 1}.123457",
            "cuts": str(2**53 + 3),
            "hold_until": f"{now_s + 3}.654321",
            "later": f"{now_s + 7}.000001",
            "answered": "3",
        }
        await shared.redis.hset(shared.key, mapping=state)
        answers = [f"{now_s - k}.{k:06d}" for k in range(3)]
        await shared.redis.rpush(shared.links.prefix + "answers", *answers)
        begun, read = shared.rates
        # Another application's script may set how Redis's JSON writes numbers, for every
        # script after it: the reply holds its values as strings, as Redis keeps them.
        await shared.redis.eval("cjson.encode_number_precision(1)", 0)
        try:
            await shared.turn(begun)
        finally:
            await shared.redis.eval("cjson.encode_number_precision(14)", 0)  # the default
        await shared.links.read_rate(read)
        for rate in (begun, read):
            control = rate.control
            assert control.state == RateState(
                rate=1.2345678901234567, peak=9.8765432109876543, cut_at=float(state["cut_at"])
            )
            assert control.cuts == 2**53 + 3
            assert control.hold_until == float(state["hold_until"])
            assert sorted(control.answers) == sorted(float(at) for at in answers)
            assert rate.seen == 3
        assert begun.later >= float(state["later"])
        await shared.redis.delete(shared.links.prefix + "answers")
        await shared.redis.hset(shared.key, "answered", "9")
        again = FleetRate(None, lambda: 0.0)
        await shared.turn(again)  # no answers since: `{}`
        assert again.seen == 9
        assert list(again.control.answers) == []

"""The client's rate controller (`_rate.RateControl`): its rules in virtual time, with no I/O,
and against a token bucket simulated request by request."""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import math
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support import until

from jobpoll import (
    ConfigurationError,
    Job,
    JobPollError,
    JobsClient,
    JobStatus,
    PollPolicy,
    RateLimited,
    WaitTimeout,
    wait_for_job,
    wait_for_jobs,
)
from jobpoll._gate import INITIAL_WINDOW, PLACES_KEPT, Gate, Line, Places
from jobpoll._rate import BACKOFF, BETA, FIRST_RATE, PROBE_SECONDS, SLACK, RateControl
from jobpoll._state import MIN_RATE, RateState
from jobpoll.testing import FakeJobsService, HttpError, RateLimit, Slow, VirtualClock

CREATED_AT = datetime(2025, 3, 31, 14, 3, 4, tzinfo=UTC)


def accept(control: RateControl, start: float, rate: float, count: int) -> float:
    """`count` accepted answers at `rate` a second from `start`; the time after the last."""
    at = start
    for _ in range(count):
        control.answered(at)
        at += 1.0 / rate
    return at


def test_off_until_the_first_refusal() -> None:
    control = RateControl()
    assert not control.limited
    assert control.rate_at(5.0) == math.inf
    for at in range(100):
        assert control.delay(float(at)) == 0.0
        control.sent(float(at))
        control.answered(float(at))


def test_the_first_refusal_of_a_busy_client_cuts_to_a_share_of_its_accepted_rate() -> None:
    control = RateControl()
    control.started_at = 0.0
    end = accept(control, 0.0, 40.0, 80)  # 80 accepted in the first 2 s
    assert control.throttled(end, sent_in=0)
    assert control.state.peak == pytest.approx(40.0)
    assert control.rate_at(end) == pytest.approx(BETA * 40.0)


def test_a_first_refusal_right_at_the_start_starts_low_and_doubles() -> None:
    control = RateControl()
    control.started_at = 0.0
    for _ in range(20):  # all at once: a measure of no time is no measure
        control.answered(0.01)
    assert control.throttled(0.02, sent_in=0)
    assert control.rate_at(0.02) == pytest.approx(20.0)  # accepted, in at least a second
    assert control.state.peak is None  # nothing measured yet: it doubles each second,
    assert control.rate_at(1.0) == pytest.approx(20.0)  # from the first answer accepted
    control.answered(0.5)
    assert control.rate_at(1.5) == pytest.approx(40.0)


def test_a_first_refusal_after_a_slow_pace_starts_low_and_doubles() -> None:
    """A client that was sending little (an answer each 5 s) measures nothing of the service
    by it: its first refusal starts low and doubles, not from a peak of its own slow pace
    (which would hold it under a request a second for minutes)."""
    control = RateControl()
    control.started_at = 0.0
    for at in (0.0, 5.0, 10.0, 15.0):
        control.answered(at)
    assert control.throttled(15.1, sent_in=0)
    assert control.state.peak is None
    accept(control, 15.2, 50.0, 250)  # 5 s of a busy client's answers, all accepted
    assert control.rate_at(20.2) >= 16.0


def test_a_cut_sets_the_rate_to_a_share_of_what_the_service_accepted() -> None:
    control = RateControl(max_rate=1000.0)  # held from the start, so answers are measured
    end = accept(control, 0.0, 50.0, 100)
    assert control.throttled(end, sent_in=0)
    assert control.state.peak == pytest.approx(50.0)
    assert control.rate_at(end) == pytest.approx(BETA * 50.0)


def test_refusals_of_requests_sent_before_the_last_cut_cut_nothing() -> None:
    control = RateControl(max_rate=1000.0)
    end = accept(control, 0.0, 50.0, 100)
    assert control.throttled(end, sent_in=0)
    rate = control.state.rate
    assert not control.throttled(end + 0.01, sent_in=0)  # the same storm
    assert (control.cuts, control.state.rate) == (1, rate)
    # Sent after the cut: new refusals. With nothing accepted since, the second cuts.
    assert not control.throttled(end + 0.02, sent_in=1)
    assert control.throttled(end + 0.03, sent_in=1)
    assert control.state.rate == pytest.approx(BACKOFF * rate, rel=0.01)


def test_with_nothing_accepted_each_cut_halves_down_to_the_floor() -> None:
    control = RateControl(max_rate=64.0)
    now = 0.0
    for cut in range(40):
        assert control.throttled(now, sent_in=cut)
        now += 0.001
    assert control.state.rate == MIN_RATE
    assert control.state.peak is None


def test_a_stray_bare_refusal_after_an_accepted_answer_cuts_nothing() -> None:
    """A bare 503 (or a refused connection) among accepted answers is a sick instance, not the
    key's limit; a second in a row, a 429, or one with a `Retry-After` cuts."""
    control = RateControl(max_rate=100.0)
    end = accept(control, 0.0, 50.0, 50)
    assert not control.throttled(end, sent_in=0, certain=False)
    assert control.throttled(end + 0.01, sent_in=0, certain=False)

    control = RateControl(max_rate=100.0)
    end = accept(control, 0.0, 50.0, 50)
    assert control.throttled(end, sent_in=0, certain=True)  # a 429


def test_the_rate_grows_back_to_the_peak_then_probes_above_it() -> None:
    control = RateControl(max_rate=10_000.0)
    end = accept(control, 0.0, 100.0, 200)
    control.throttled(end, sent_in=0)
    peak = control.state.peak
    assert peak == pytest.approx(100.0)
    assert control.rate_at(end + 1.0) == pytest.approx(BETA * peak)  # nothing accepted yet
    control.answered(end)
    rates = [control.rate_at(end + t / 10) for t in range(int(10 * PROBE_SECONDS) + 1)]
    assert rates == sorted(rates)  # it never falls without a refusal
    assert rates[-1] == pytest.approx(peak)  # back at the peak after PROBE_SECONDS
    # Flat near the peak: half-way there it is already within 2% of it.
    assert control.rate_at(end + PROBE_SECONDS / 2) > 0.98 * peak
    # Above the peak only while the service's answers keep up with the rate.
    assert control.rate_at(end + 3 * PROBE_SECONDS) == pytest.approx(peak)
    accept(control, end + 2 * PROBE_SECONDS, 150.0, int(150 * PROBE_SECONDS))
    assert control.rate_at(end + 3 * PROBE_SECONDS) > 1.5 * peak


def test_retry_after_holds_the_rate_for_as_long_as_it_says() -> None:
    control = RateControl(max_rate=10_000.0)
    end = accept(control, 0.0, 100.0, 200)
    control.throttled(end, sent_in=0, retry_after=5.0)
    control.answered(end)
    cut = control.rate_at(end)
    assert control.rate_at(end + 4.99) == cut
    assert control.rate_at(end + 6.0) > cut
    # A later refusal's Retry-After holds it too, even one of the same storm.
    control.throttled(end + 6.0, sent_in=0, retry_after=10.0)
    held = control.rate_at(end + 6.0)
    assert control.rate_at(end + 15.9) == held


def test_the_ceiling_holds_from_the_start_and_after_a_cut() -> None:
    control = RateControl(max_rate=20.0)
    assert control.limited
    assert control.rate_at(0.0) == 20.0
    assert control.rate_at(1e9) == 20.0
    end = accept(control, 0.0, 10.0, 50)  # the service accepts only 10 a second
    control.throttled(end, sent_in=0)
    assert control.rate_at(end) == pytest.approx(BETA * 10.0)
    accept(control, end, 100.0, 1000)
    assert max(control.rate_at(end + t) for t in range(0, 600, 7)) == 20.0


def test_requests_leave_evenly_spaced_and_one_late_lets_none_catch_up() -> None:
    control = RateControl(max_rate=10.0)
    assert control.delay(0.0) == 0.0
    control.sent(0.0)
    assert control.delay(0.0) == pytest.approx(0.1 - SLACK)
    assert control.delay(0.05) == pytest.approx(0.05 - SLACK)
    control.sent(0.1 - SLACK)  # a little early: its slot is still 0.1
    assert control.delay(0.1) == pytest.approx(0.1 - SLACK)
    # A second late (a busy event loop): one request at once, the next a spacing later.
    assert control.delay(1.2) == 0.0
    control.sent(1.2)
    assert control.delay(1.2) == pytest.approx(0.1 - SLACK)


def test_a_restored_rate_goes_on_unless_one_was_learned_here() -> None:
    saved = RateState(rate=45.0, peak=50.0, cut_at=-2.0)
    control = RateControl()
    control.restore(saved)
    assert control.limited
    assert control.rate_at(-2.0) == 45.0
    learned = RateControl(max_rate=1000.0)
    end = accept(learned, 0.0, 30.0, 60)
    learned.throttled(end, sent_in=0)
    learned.restore(saved)
    assert learned.state.peak == pytest.approx(30.0)
    capped = RateControl(max_rate=20.0)
    capped.restore(saved)
    assert capped.rate_at(0.0) == 20.0


# Against a token bucket, request by request ---------------------------------------------


def woken(delay: float) -> float:
    """When a sleep of `delay` ends on an event loop: epoll's timeout is whole milliseconds,
    rounded up, and the loop is a little late."""
    return math.ceil(delay * 1000) / 1000 + 5e-5 if delay > 0 else 1e-5


@dataclasses.dataclass
class Sender:
    """One client of the simulated bucket: its controller and its requests' counts. It sends
    from `start` until `stop` (virtual seconds)."""

    start: float = 0.0
    stop: float = math.inf
    control: RateControl = dataclasses.field(default_factory=RateControl)
    out: int = 0
    window: int = INITIAL_WINDOW
    head_waiting: bool = True
    sent: int = 0
    refused: int = 0
    per_second: dict[int, int] = dataclasses.field(default_factory=dict)

    def accepted(self, low: float, high: float = math.inf) -> int:
        """Accepted answers from second `low` to before `high`."""
        return sum(count for second, count in self.per_second.items() if low <= second < high)


def run_against_bucket(
    limit: float, burst: float, *, seconds: float, **options: Any
) -> tuple[dict[int, int], int, int]:
    """One client against the bucket (`run_senders`): the accepted answers per second, and
    the requests sent and refused."""
    (sender,) = run_senders(limit, burst, [Sender()], seconds=seconds, **options)
    return sender.per_second, sender.sent, sender.refused


def run_senders(
    limit: float,
    burst: float,
    senders: list[Sender],
    *,
    seconds: float,
    changes: tuple[tuple[float, float], ...] = (),
    round_trip: float = 0.002,
    in_flight: int = 100,
    bare: bool = False,
    noise: float = 0.0,
    every: int = 0,
    jitter: float = 0.0,
    seed: int = 1,
) -> list[Sender]:
    """Clients with requests always waiting, each sending as `_gate` sends them (the head of
    its line sleeps for `delay`, then sends), to one token bucket of `limit` a second that
    answers 429 with `Retry-After: 1` over it (`bare`: a 503 without one, as a gateway may
    throttle). The head of the line wakes as an event loop's timer does: on the next whole
    millisecond, a little late. Before its first refusal, a client's requests go out in
    `_gate`'s slow start (a window of `INITIAL_WINDOW`, one more with each answer, up to
    `in_flight`). `noise`: the share of requests refused at random besides (a draw seeded
    with `seed`); `every`: each request numbered a multiple of it refused besides (one
    instance of `every` behind a round robin that limits on its own, say). `jitter`: each
    request reaches the bucket up to that many seconds after it left (a seeded uniform draw;
    the path's and the event loop's unevenness). The senders, with their counts."""
    draw = random.Random(seed).random
    for sender in senders:
        sender.control.started_at = sender.start
    tokens, filled, rate_now = burst, 0.0, limit
    pending = list(changes)
    events = [(sender.start, index, index, "send", 0) for index, sender in enumerate(senders)]
    heapq.heapify(events)
    order = len(senders)
    decided = 0
    now = 0.0
    while events and now < seconds:
        now, _, index, kind, sent_in = heapq.heappop(events)
        sender = senders[index]
        control = sender.control
        if kind == "send":
            sender.head_waiting = False
            if sender.out >= in_flight or now >= sender.stop:
                continue
            if control.limited and control.delay(now) > 0:
                wake = now + woken(min(control.delay(now), 1.0))
                heapq.heappush(events, (wake, order, index, "send", 0))
                order, sender.head_waiting = order + 1, True
                continue
            out = sender.out
            burst_size = 1 if control.limited else max(0, min(sender.window, in_flight) - out)
            for _ in range(burst_size):
                arrival = now + jitter * draw() if jitter else now
                heapq.heappush(events, (arrival, order, index, "arrive", control.cuts))
                control.sent(now) if control.limited else None
                order, sender.out, sender.sent = order + 1, sender.out + 1, sender.sent + 1
            if control.limited:
                wake = now + woken(control.delay(now))
                heapq.heappush(events, (wake, order, index, "send", 0))
                order, sender.head_waiting = order + 1, True
            continue
        if kind == "arrive":
            while pending and pending[0][0] <= now:
                rate_now = pending.pop(0)[1]
            tokens = min(burst, tokens + (now - filled) * rate_now)
            filled = now
            decided += 1
            lucky = draw() >= noise and not (every and decided % every == 0)
            answer = "accepted" if tokens >= 1 and lucky else "refused"
            tokens -= 1 if tokens >= 1 else 0
            heapq.heappush(events, (now + round_trip, order, index, answer, sent_in))
            order += 1
            continue
        sender.out -= 1
        if kind == "accepted":
            control.answered(now)
            sender.window += 1
            sender.per_second[int(now)] = sender.per_second.get(int(now), 0) + 1
        else:
            sender.refused += 1
            control.throttled(now, sent_in, None if bare else 1.0, certain=not bare)
        if not sender.head_waiting:
            heapq.heappush(events, (now, order, index, "send", 0))
            order, sender.head_waiting = order + 1, True
    return senders


def keeps_near_the_limit(
    limit: float,
    burst: float,
    *,
    bare: bool = False,
    noise: float = 0.0,
    every: int = 0,
    jitter: float = 0.0,
    least: float = 0.9,
) -> None:
    """Over 120 s, once 10 s have passed, at least `least` of the limit accepted (of what the
    `noise` or `every` leaves of it); at most 5% refused over the whole run, besides them."""
    seconds = 120.0
    per_second, sent, refused = run_against_bucket(
        limit,
        burst,
        seconds=seconds,
        bare=bare,
        noise=noise,
        every=every,
        jitter=jitter,
    )
    noise = noise or (1 / every if every else 0.0)
    accepted_late = sum(count for second, count in per_second.items() if second >= 10)
    assert accepted_late / (seconds - 10) >= least * limit * (1 - noise)
    assert refused / sent <= 0.05 + noise


@pytest.mark.parametrize(
    ("limit", "burst"), [(5.0, 1.0), (5.0, 20.0), (50.0, 1.0), (50.0, 20.0), (500.0, 20.0)]
)
def test_against_a_token_bucket_it_keeps_near_the_limit(limit: float, burst: float) -> None:
    """Once 10 s have passed, at least 0.9 of the limit accepted; at most 5% refused. (A
    bucket of one token at 500 a second wants requests 2 ms apart to the tenth of a
    millisecond, finer than an event loop's timers: not a limit a client can keep to.)"""
    keeps_near_the_limit(limit, burst)


@pytest.mark.parametrize(
    ("limit", "noise", "least"), [(50.0, 0.01, 0.9), (50.0, 0.025, 0.8), (500.0, 0.025, 0.7)]
)
def test_refusals_at_random_do_not_drive_the_rate_down(
    limit: float, noise: float, least: float
) -> None:
    """A bucket that also refuses a share of requests at random, at any rate: noise, which a
    cut on every refusal follows down to a fraction of the limit (0.5, 0.17 and 0.02 of it
    here). Taken for noise, it keeps the rate near the limit: at least `least` of it."""
    keeps_near_the_limit(limit, 20.0, noise=noise, least=least)


@pytest.mark.parametrize(("limit", "least"), [(100.0, 0.8), (500.0, 0.7)])
def test_one_request_in_21_refused_does_not_pin_the_rate(limit: float, least: float) -> None:
    """A service that refuses exactly one request in 21 (4.8%, just under the share a noisy
    service is cut at) besides its bucket: a rule that counts a probe's refusals from the
    refusal that opened it sees more than 5%, cuts every probe, and holds the rate near a
    third of the limit."""
    keeps_near_the_limit(limit, 20.0, every=21, least=least)


@pytest.mark.xfail(
    strict=True,
    reason="noise is told from a limit by runs of accepted answers after a refusal on the low"
    " half: refusals at 5% or more of the answers at any rate (with a bucket of one token,"
    " its own added to 4% at random) leave no run that long and are cut on as a limit, cut"
    " after cut (0.18, 0.30 and 0.05 of what they leave of the limit kept)",
)
@pytest.mark.parametrize(
    ("burst", "noise", "every"),
    [
        pytest.param(20.0, 0.0, 20, id="every-20th"),
        pytest.param(20.0, 0.08, 0, id="8%-at-random"),
        pytest.param(1.0, 0.04, 0, id="one-token-4%-at-random"),
    ],
)
def test_refusals_of_5_percent_or_more_at_any_rate_do_not_collapse_the_rate(
    burst: float, noise: float, every: int
) -> None:
    """Refusals the rate does not cause (a sick instance behind a balancer refusing a share of
    everything) are not cut on without end: at least 0.7 of what they leave of a 50/s limit."""
    keeps_near_the_limit(50.0, burst, noise=noise, every=every, least=0.7)


@pytest.mark.xfail(
    strict=True,
    reason="under about 3 a second, the requests between two cuts are fewer than a measure"
    " needs (4 answers): no peak is ever learned, and the rate halves and doubles, cut after"
    " cut: 41% refused at 1 a second and 26% at 2, with a bucket of one token",
)
@pytest.mark.parametrize("limit", [1.0, 2.0])
def test_against_a_limit_of_a_request_or_two_a_second_it_keeps_near_the_limit(
    limit: float,
) -> None:
    keeps_near_the_limit(limit, 1.0, jitter=0.002)


@pytest.mark.xfail(
    strict=True,
    reason="above a peak of a few requests a second, SCALE's growth (0.4 a second after a"
    " second, cubed) passes the limit within a second, not after PROBE_REQUESTS requests:"
    " at 3 a second with a burst of 5, 6.9% refused (4.9% with the peak's share alone);"
    " with a ceiling of 4.5 and a bucket of one token, 0.87 of the limit kept (0.92)",
)
def test_against_a_limit_of_three_a_second_it_keeps_near_the_limit() -> None:
    keeps_near_the_limit(3.0, 5.0)


@pytest.mark.xfail(
    strict=True,
    reason="behind a path that delays each request by up to 2 ms, a bucket of one token at"
    " 50 a second refuses now and then from 0.92 of its limit on (a client held there keeps"
    " 0.91 of it; held at 0.94, 0.88): the rate saw-tooths from BETA of the peak up to where"
    " refusals begin, and keeps 0.86",
)
def test_against_a_bucket_of_one_token_behind_a_jittery_path_it_keeps_near_the_limit() -> None:
    """A bucket of one token refuses a request that arrives a millisecond early: the shape
    that keeps 0.85 to 0.87 of the limit in `benchmarks/bench_ratelimit.py`, on loopback."""
    keeps_near_the_limit(50.0, 1.0, jitter=0.002)


@pytest.mark.xfail(
    strict=True,
    reason="a bare 503 right after an accepted answer is taken for a stray one and cuts"
    " nothing: throttled by bare 503s, the rate climbs to twice the limit, about half refused",
)
@pytest.mark.parametrize(("limit", "burst"), [(5.0, 1.0), (50.0, 20.0)])
def test_against_a_bucket_that_answers_bare_503s_it_keeps_near_the_limit(
    limit: float, burst: float
) -> None:
    keeps_near_the_limit(limit, burst, bare=True)


def test_a_peak_measured_while_sending_little_does_not_hold_a_busy_client_down() -> None:
    """A lone wait polling every 10 s meets two refusals (another client of the key used the
    quota); then a fan-out starts on the same client, and the service refuses nothing: within
    a minute the client sends at 50 a second."""
    control = RateControl()
    control.started_at = 0.0
    now = 0.0
    for poll in range(66):
        if poll in (60, 65):
            assert control.throttled(now, sent_in=control.cuts)
        control.sent(now)
        control.answered(now + 0.01)
        now += 10.0
    assert control.state.peak == MIN_RATE
    start = now
    while now < start + 60.0 and control.rate_at(now) < 50.0:
        now += control.delay(now) + 1e-4
        control.sent(now)
        control.answered(now + 0.005)
    assert control.rate_at(now) >= 50.0


def two_on_one_limit(second_from: float, seed: int, *, stop: float = math.inf) -> list[Sender]:
    """Two clients of one key, not coordinated, on a limit of 50 a second with a burst of 20
    behind a path 2 ms uneven: the shape of `benchmarks/bench_ratelimit.py --case two`. The
    second starts `second_from` seconds after the first; the first stops at `stop`."""
    senders = [Sender(stop=stop), Sender(start=second_from)]
    return run_senders(
        50.0, 20.0, senders, seconds=min(stop + 30.0, 120.0), jitter=0.002, seed=seed
    )


def accepted_in_the_first_minute(second_from: float) -> list[list[int]]:
    """For seeds 1 to 8, each client's accepted answers from 15 s to 60 s, two on one limit
    (`two_on_one_limit`; the first stops at 60 s)."""
    return [
        [sender.accepted(15, 60) for sender in two_on_one_limit(second_from, seed, stop=60.0)]
        for seed in range(1, 9)
    ]


@pytest.mark.parametrize("second_from", [0.0, 5.0])
def test_a_client_left_alone_on_a_shared_limit_takes_all_of_it_within_10_s(
    second_from: float,
) -> None:
    """When one of two clients sharing a limit is done, the other takes the whole limit
    within 10 s, whatever share it held (a peak measured while holding a few requests a
    second grew back on a curve scaled to that peak: 0.04 of the limit for half a minute)."""
    for seed in range(1, 9):
        _, left = two_on_one_limit(second_from, seed, stop=60.0)
        assert left.accepted(70, 90) >= 0.9 * 50 * 20, seed


def test_two_clients_starting_together_share_a_limit() -> None:
    """Two clients started together on one limit: together they keep 0.95 of it, and the
    smaller's share is at least a third in most runs (seeds); above their peaks both grow by
    like amounts, so the smaller gains at each cut (on a curve scaled to each one's peak, the
    shares drifted apart: the smaller's median 0.29)."""
    shares = []
    for seed, accepted in enumerate(accepted_in_the_first_minute(0.0), start=1):
        assert sum(accepted) >= 0.95 * 50 * 45, seed
        shares.append(min(accepted) / sum(accepted))
    assert sorted(shares)[len(shares) // 2] >= 1 / 3


@pytest.mark.xfail(
    strict=True,
    reason="a client that starts while another holds the limit measures a peak of a few"
    " requests a second, and the holder yields only a tenth at each cut: the late one's median"
    " share over the next 45 s is 0.14",
)
def test_a_client_that_starts_late_gets_a_third_of_a_shared_limit() -> None:
    shares = [min(accepted) / sum(accepted) for accepted in accepted_in_the_first_minute(5.0)]
    assert sorted(shares)[len(shares) // 2] >= 1 / 3


def test_a_limit_that_halves_and_doubles_is_found_again_within_10_s() -> None:
    per_second, _, _ = run_against_bucket(
        50.0, 20.0, seconds=120.0, changes=((40.0, 25.0), (80.0, 50.0))
    )
    assert sum(per_second.get(s, 0) for s in range(30, 40)) >= 0.9 * 500
    assert all(per_second.get(s, 0) <= 1.2 * 25 for s in range(42, 80))
    assert sum(per_second.get(s, 0) for s in range(50, 80)) >= 0.9 * 25 * 30
    assert sum(per_second.get(s, 0) for s in range(90, 120)) >= 0.9 * 50 * 30


# Shared by everything that uses one client ----------------------------------------------


async def test_a_refusal_seen_by_one_caller_slows_every_other(clock: VirtualClock) -> None:
    """The rate is the client's: refusals met by `get_job` calls hold a later lone wait and a
    fan-out on the same client to it, before their first request."""
    async with (
        FakeJobsService(clock=clock) as service,
        JobsClient(
            service.api_key, base_url=service.base_url, clock=clock, sleep=clock.sleep
        ) as client,
    ):
        first, second, third = (service.add_job(duration=0) for _ in range(3))
        service.inject(HttpError(429), times=3)
        for _ in range(3):
            with pytest.raises(RateLimited):
                await client.get_job(first)
        rate = client.rate
        assert rate == FIRST_RATE / 4  # the first refusal, then two halvings
        policy = PollPolicy(clock=clock, sleep=clock.sleep)
        await wait_for_job(client, second, policy=policy)
        [result] = await wait_for_jobs(client, [third], policy=policy)
        assert result.ok
    times = [r.at for r in service.recent_requests]
    assert len(times) == 5
    assert times[3] - times[2] == pytest.approx(1 / rate - SLACK)  # the lone wait's turn
    assert times[4] - times[3] >= 1.0  # and the fan-out's, at a rate grown since


async def test_the_ceiling_spaces_every_request_of_the_client(clock: VirtualClock) -> None:
    async with (
        FakeJobsService(clock=clock) as service,
        JobsClient(
            service.api_key,
            base_url=service.base_url,
            max_rate=4.0,
            clock=clock,
            sleep=clock.sleep,
        ) as client,
    ):
        ids = [service.add_job(duration=0) for _ in range(12)]
        for job_id in ids:
            await client.get_job(job_id)
        results = await wait_for_jobs(
            client, ids, policy=PollPolicy(clock=clock, sleep=clock.sleep), max_in_flight=1
        )
    assert all(result.ok for result in results)
    times = [r.at for r in service.recent_requests]
    assert len(times) == 24
    assert all(b - a >= 0.25 - SLACK - 1e-9 for a, b in itertools.pairwise(times))
    assert times[-1] - times[0] >= 23 * 0.25 - SLACK
    assert client.rate == 4.0


async def test_a_job_whose_request_was_refused_keeps_its_place_in_line(clock: VirtualClock) -> None:
    """A refused request's job goes on from the refused request's place in the client's
    line: its retry goes out before the requests that entered the line after it, not behind
    every one of them. (The gate alone, in virtual time: over HTTP, a virtual clock runs
    ahead while a request is on the wire, and the line's order is lost in the race.)"""
    gate = Gate(1.0, 100, clock, clock.sleep)
    sent: list[tuple[str, float]] = []
    refuse = {"a"}

    async def poll(job_id: str) -> Job | JobPollError:
        async def send(_: float | None) -> Job | JobPollError:
            sent.append((job_id, clock()))
            if job_id in refuse:
                refuse.discard(job_id)
                return RateLimited(429, job_id=job_id, retry_after=0.5)
            return Job(id=job_id, created_at=CREATED_AT, status=JobStatus("RUNNING"))

        return await gate.in_turn(send, job_id, None)

    async def waits(job_id: str) -> None:
        while isinstance(await poll(job_id), RateLimited):
            await clock.sleep(0.5)  # its Retry-After

    async with asyncio.TaskGroup() as group:
        for job_id in "abcdefg":
            group.create_task(waits(job_id))
    order = [job_id for job_id, _ in sent]
    assert order[:3] == ["a", "b", "a"]  # the retry, before c to g
    assert order[3:] == list("cdefg")


def test_a_kept_place_is_taken_by_the_jobs_next_request_only() -> None:
    """A place is kept for the job's next request and taken by it (a request of the same job
    beside it enters anew); the oldest go past `PLACES_KEPT`."""
    places = Places()
    first, kept = places.take("a", 1.0)
    assert not kept
    places.keep("a", first, 2.0)
    assert places.take("a", 3.0) == (first, True)
    assert places.take("a", 3.0)[0] > first  # taken: the next enters anew
    places.keep("a", None, 4.0)  # a kept place's request refused again: a place of then
    assert places.take("a", 5.0)[0][0] == 4.0
    for index in range(PLACES_KEPT + 1):
        places.keep(f"job-{index}", (float(index), index), 0.0)
    place, kept = places.take("job-0", 9e9)  # the oldest, forgotten
    assert not kept
    assert place[0] == 9e9
    assert places.take("job-1", 9e9) == ((1.0, 1), True)


def test_a_line_does_not_keep_the_turns_given_up_behind_a_waiting_one() -> None:
    """Turns given up in a line are skipped when they come up; behind one that waits for
    long, they are cleared once they are most of the line, not kept for as long."""

    async def given_up() -> int:
        line, loop = Line(), asyncio.get_running_loop()
        line.add((0.0, 0), loop.create_future())  # waits for as long as the test runs
        for index in range(10_000):
            turn: asyncio.Future[bool] = loop.create_future()
            line.add((1.0, index), turn)
            turn.cancel()
            line.dropped()
        return len(line)

    assert asyncio.run(given_up()) <= 200


def refusing_gate(
    clock: VirtualClock, refused: Callable[[str, int], bool]
) -> tuple[Gate, list[str], Callable[[str, float | None], Awaitable[Job | JobPollError]]]:
    """A gate of one request a second on `clock`, and a `poll(job_id, timeout)` through it
    whose request is refused (429, `Retry-After: 0.5`) when `refused(job_id, count)` says so
    (`count`: the job's requests sent before); the job ids sent, in order."""
    gate = Gate(1.0, 100, clock, clock.sleep)
    sent: list[str] = []

    async def poll(job_id: str, seconds: float | None = None) -> Job | JobPollError:
        async def send(_: float | None) -> Job | JobPollError:
            count = sent.count(job_id)
            sent.append(job_id)
            if refused(job_id, count):
                return RateLimited(429, job_id=job_id, retry_after=0.5)
            return Job(id=job_id, created_at=CREATED_AT, status=JobStatus("RUNNING"))

        return await gate.in_turn(send, job_id, seconds)

    return gate, sent, poll


async def test_requests_of_one_job_side_by_side_each_take_a_turn(clock: VirtualClock) -> None:
    """A job polled by two waits at once (a fan-out and a lone wait, say), after a refusal:
    one request takes the kept place, the others places of their own, and all go out."""
    _, sent, poll = refusing_gate(clock, lambda job_id, count: job_id == "a" and count == 0)
    assert isinstance(await poll("a"), RateLimited)
    head = asyncio.ensure_future(poll("x"))
    await asyncio.sleep(0)
    both = [asyncio.ensure_future(poll("a")) for _ in range(3)]
    later = asyncio.ensure_future(poll("b"))
    outcomes = await asyncio.gather(head, *both, later)
    assert all(isinstance(outcome, Job) for outcome in outcomes)
    assert sent == ["a", "x", "a", "a", "a", "b"]


async def test_a_job_refused_again_and_again_goes_before_no_later_request_for_good(
    clock: VirtualClock,
) -> None:
    """Two jobs refused at every request (a sick shard, say) retry every half second: a
    request that came after them goes out after their retries from places older than its
    own, not never (a refused request whose place was a kept one keeps a place of then)."""
    _, sent, poll = refusing_gate(clock, lambda job_id, count: job_id != "n")

    async def refused_forever(job_id: str) -> None:
        while True:
            await poll(job_id)
            await clock.sleep(0.5)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(refused_forever(job_id)) for job_id in ("k1", "k2")]
        await asyncio.sleep(0)
        assert isinstance(await poll("n"), Job)
        for task in tasks:
            task.cancel()
    assert sent[:5] == ["k1", "k2", "k1", "k2", "n"]  # their retries came before n did


@settings(max_examples=60, deadline=None)
@given(
    requests=st.lists(
        st.tuples(
            st.integers(0, 4),  # the job
            st.sampled_from([None, 0.5, 0.01]),  # its timeout
            st.booleans(),  # refused
            st.integers(0, 2),  # steps before the next enters
        ),
        min_size=5,
        max_size=25,
    ),
    cancellations=st.lists(st.tuples(st.integers(0, 24), st.integers(0, 4)), max_size=6),
    max_rate=st.sampled_from([None, 2.0, 1000.0]),
)
def test_refusals_timeouts_and_cancellations_of_many_jobs_leave_the_gate_serving(
    requests: list[tuple[int, float | None, bool, int]],
    cancellations: list[tuple[int, int]],
    max_rate: float | None,
) -> None:
    """Requests of a few jobs, refused or not, with timeouts, cancelled anywhere: each ends as
    a job, a typed error or cancelled, none is sent after its cancellation, and the gate
    serves the requests that come after (kept places and given-up turns included)."""
    asyncio.run(_many_jobs_in_the_gate(requests, cancellations, max_rate))


async def _many_jobs_in_the_gate(
    requests: list[tuple[int, float | None, bool, int]],
    cancellations: list[tuple[int, int]],
    max_rate: float | None,
) -> None:
    clock = VirtualClock()
    gate = Gate(max_rate, 20, clock, clock.sleep)
    cancelled: set[int] = set()
    late: list[int] = []

    def sender(index: int, job_id: str, refused: bool) -> Callable[[float | None], Any]:
        async def send(_: float | None) -> Job | JobPollError:
            if index in cancelled:
                late.append(index)
            await asyncio.sleep(0)
            if refused:
                return RateLimited(429, job_id=job_id, retry_after=0.1)
            return Job(id=job_id, created_at=CREATED_AT, status=JobStatus("RUNNING"))

        return send

    tasks: list[asyncio.Future[Job | JobPollError]] = []
    for index, (job, timeout, refused, steps) in enumerate(requests):
        job_id = f"job-{job}"
        tasks.append(
            asyncio.ensure_future(gate.in_turn(sender(index, job_id, refused), job_id, timeout))
        )
        for _ in range(steps):
            await asyncio.sleep(0)
    for index, steps in cancellations:
        for _ in range(steps):
            await asyncio.sleep(0)
        if index < len(tasks) and tasks[index].cancel():
            cancelled.add(index)
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    for outcome in outcomes:
        assert isinstance(outcome, (Job, JobPollError, asyncio.CancelledError)), outcome
    assert not late
    async with asyncio.timeout(30):  # a bound on a hang, never reached when it serves
        again = await asyncio.gather(
            *(
                gate.in_turn(sender(100 + n, f"job-{n % 5}", False), f"job-{n % 5}", None)
                for n in range(8)
            )
        )
    assert all(isinstance(outcome, Job) for outcome in again)


async def test_against_the_fakes_token_bucket_a_fan_out_loses_nothing(clock: VirtualClock) -> None:
    """The fake's `RateLimit` refuses what goes over it; the fan-out's client learns the rate
    and every job ends with its true outcome, few requests refused."""
    async with (
        FakeJobsService(clock=clock, rate_limit=RateLimit(rate=10.0, burst=5.0)) as service,
        JobsClient(
            service.api_key, base_url=service.base_url, clock=clock, sleep=clock.sleep
        ) as client,
    ):
        ids = [service.add_job(duration=30) for _ in range(40)]
        results = await wait_for_jobs(
            client, ids, policy=PollPolicy(clock=clock, sleep=clock.sleep), max_in_flight=1
        )
    assert all(result.ok for result in results)
    refused = [r for r in service.recent_requests if r.http_status == 429]
    assert len(refused) <= 0.1 * len(service.recent_requests)
    assert client.rate < math.inf


def test_the_fakes_token_bucket_refills_at_its_rate() -> None:
    bucket = RateLimit(rate=2.0, burst=3.0, retry_after=2.0)
    assert [bucket.refusal(0.0) is None for _ in range(4)] == [True, True, True, False]
    refusal = bucket.refusal(0.4)
    assert refusal is not None
    assert (refusal.status, refusal.retry_after) == (429, 2.0)
    assert bucket.refusal(0.5) is None  # half a second: one token
    bucket.rate = 1.0  # changed while running: the tokens left are kept
    assert bucket.refusal(1.0) is not None  # half a token
    assert bucket.refusal(1.5) is None
    assert bucket.refusal(1.6) is not None


def test_a_shared_state_is_adopted_with_the_answers_counted_since() -> None:
    """A mirror of a state kept elsewhere (a SAQ queue's, in Redis) takes its rate, cuts and
    hold, adds the answers it counted, and drops those of a cut before; with no rate shared
    the ceiling is the rate."""
    control = RateControl(max_rate=100.0)
    control.adopt(RateState(), 0, -math.inf, [1.0, 2.0])
    assert control.state.rate == 100.0
    assert list(control.answers) == [1.0, 2.0]
    shared = RateState(rate=9.0, peak=10.0, cut_at=3.0)
    control.adopt(shared, 1, 5.0, [3.5])
    assert (control.state, control.cuts, control.hold_until) == (shared, 1, 5.0)
    assert list(control.answers) == [3.5]
    assert control.rate_at(4.0) == 9.0  # held until 5
    control.adopt(shared, 1, 5.0, [3.6])
    assert list(control.answers) == [3.5, 3.6]


# Cancellation and timeouts while requests wait their turn ------------------------------


class HeldSleep:
    """A client's `sleep` on the virtual clock that first waits until `release` is set: a
    request at the head of the line stays asleep for as long as a test needs."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.release = asyncio.Event()
        self.asleep = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asleep.set()
        await self.release.wait()
        await self.clock.sleep(seconds)


@pytest.mark.parametrize("request_timeout", [None, 30.0])
async def test_a_request_in_line_cancelled_with_the_head_is_cancelled(
    clock: VirtualClock, request_timeout: float | None
) -> None:
    """A fan-out's `aclose`, or a task group, cancels every poll at once: the one at the head
    of the line hands its turn on to the next, cancelled in the same step. That one ends
    cancelled (not with a `ValueError`, nor by sending its request anyway), and the line
    still serves the requests that come after."""
    held = HeldSleep(clock)
    async with (
        FakeJobsService(clock=clock) as service,
        JobsClient(
            service.api_key, base_url=service.base_url, max_rate=1.0, clock=clock, sleep=held
        ) as client,
    ):
        job_id = service.add_job(duration=0)
        await client.get_job(job_id)  # the next request's slot is a second away
        head = asyncio.ensure_future(client.get_job(job_id))
        await held.asleep.wait()
        in_line = asyncio.ensure_future(client.get_job(job_id, timeout=request_timeout))
        await asyncio.sleep(0)
        head.cancel()
        in_line.cancel()
        held.release.set()
        outcomes = await asyncio.gather(head, in_line, return_exceptions=True)
        assert [type(outcome) for outcome in outcomes] == [asyncio.CancelledError] * 2
        assert len(service.recent_requests) == 1
        assert (await client.get_job(job_id)).id == job_id
        assert len(service.recent_requests) == 2


async def test_a_wait_in_line_cancelled_as_it_is_handed_the_head_hands_it_on(
    clock: VirtualClock,
) -> None:
    """Handed the head and cancelled in the same step: cancelled, and the request behind it
    goes out."""
    held = HeldSleep(clock)
    async with (
        FakeJobsService(clock=clock) as service,
        JobsClient(
            service.api_key, base_url=service.base_url, max_rate=1.0, clock=clock, sleep=held
        ) as client,
    ):
        job_id = service.add_job(duration=0)
        await client.get_job(job_id)
        head = asyncio.ensure_future(client.get_job(job_id))
        await held.asleep.wait()
        second = asyncio.ensure_future(client.get_job(job_id, timeout=30.0))
        third = asyncio.ensure_future(client.get_job(job_id, timeout=30.0))
        await asyncio.sleep(0)
        head.cancel()
        await asyncio.sleep(0)  # the head hands its turn to the second
        second.cancel()
        held.release.set()
        outcomes = await asyncio.gather(head, second, third, return_exceptions=True)
        assert [type(outcome) for outcome in outcomes] == [
            asyncio.CancelledError,
            asyncio.CancelledError,
            Job,
        ]
        assert len(service.recent_requests) == 2


async def test_a_wait_keeps_its_timeout_while_the_first_requests_go_unanswered(
    clock: VirtualClock,
) -> None:
    """Before any answer, a client's requests go out a few at a time (its slow start); a wait
    whose request waits for its turn behind requests the server does not answer still ends
    at its deadline, not once they time out."""
    slow = 30.0
    async with (
        FakeJobsService(clock=clock) as service,
        JobsClient(
            service.api_key, base_url=service.base_url, clock=clock, sleep=clock.sleep
        ) as client,
    ):
        job_id = service.add_job(duration=0)
        service.inject(Slow(slow), times=INITIAL_WINDOW)
        hung = [asyncio.ensure_future(client.get_job(job_id)) for _ in range(INITIAL_WINDOW)]
        await until(lambda: service.in_flight == INITIAL_WINDOW)
        policy = PollPolicy(clock=clock, sleep=clock.sleep)
        lone = asyncio.ensure_future(wait_for_job(client, job_id, policy=policy, timeout=0.05))
        done, _ = await asyncio.wait([lone, *hung], return_when=asyncio.FIRST_COMPLETED)
        assert done == {lone}
        with pytest.raises(WaitTimeout):
            lone.result()
        for task in hung:
            task.cancel()
        await asyncio.gather(*hung, return_exceptions=True)


def test_a_ceiling_below_the_floor_is_kept() -> None:
    """A quota slower than `MIN_RATE` (a request every 10 s, say) is the ceiling all the
    same: the client starts at it, and a refusal does not lift it."""
    control = RateControl(max_rate=0.1)
    assert control.rate_at(0.0) == pytest.approx(0.1)
    control.sent(0.0)
    assert control.delay(0.0) == pytest.approx(10.0 - SLACK)
    assert control.throttled(1.0, sent_in=0)
    assert control.rate_at(100.0) == pytest.approx(0.1)
    control.restore(RateState(rate=50.0, peak=60.0, cut_at=0.0))
    assert control.rate_at(100.0) == pytest.approx(0.1)
    fresh = RateControl(max_rate=0.1)
    fresh.restore(RateState(rate=50.0, peak=60.0, cut_at=0.0))
    assert fresh.rate_at(0.0) == pytest.approx(0.1)
    client = JobsClient("k" * 20, base_url="http://127.0.0.1:1", max_rate=0.1)
    assert client.max_rate == 0.1
    assert client.rate == pytest.approx(0.1)


@settings(max_examples=30, deadline=None)
@given(
    timeouts=st.lists(st.sampled_from([None, 0.5, 5.0]), min_size=12, max_size=12),
    cancellations=st.lists(
        st.tuples(st.integers(0, 11), st.integers(0, 8), st.integers(0, 3), st.booleans()),
        max_size=8,
    ),
    max_rate=st.sampled_from([2.0, 1000.0]),
)
@example(timeouts=[0.5] * 12, cancellations=[], max_rate=2.0)  # all out of time in line
def test_cancellations_anywhere_leave_the_gate_serving(
    timeouts: list[float | None], cancellations: list[tuple[int, int, int, bool]], max_rate: float
) -> None:
    """Requests waiting for the slow start's window, in line for the rate, at the head, or out,
    cancelled anywhere (twice, the second during the first's cleanup): each ends as a job, a
    typed error or cancelled, and the client's next requests all go out."""
    asyncio.run(_cancelled_in_the_gate(timeouts, cancellations, max_rate))


async def _cancelled_in_the_gate(
    timeouts: list[float | None], cancellations: list[tuple[int, int, int, bool]], max_rate: float
) -> None:
    clock = VirtualClock()
    async with (
        FakeJobsService(clock=clock) as service,
        JobsClient(
            service.api_key,
            base_url=service.base_url,
            max_rate=max_rate,
            clock=clock,
            sleep=clock.sleep,
        ) as client,
    ):
        job_id = service.add_job(duration=0)
        tasks = [asyncio.ensure_future(client.get_job(job_id, timeout=t)) for t in timeouts]
        for index, ticks, second_after, twice in cancellations:
            for _ in range(ticks):
                await asyncio.sleep(0)
            tasks[index].cancel()
            if twice:
                for _ in range(second_after):
                    await asyncio.sleep(0)
                tasks[index].cancel()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for outcome in outcomes:
            assert isinstance(outcome, (Job, JobPollError, asyncio.CancelledError)), outcome
        async with asyncio.timeout(30):  # a bound on a hang, never reached when it serves
            again = await asyncio.gather(*(client.get_job(job_id) for _ in range(12)))
        assert all(job.id == job_id for job in again)


@pytest.mark.parametrize("value", [0, -1.0, math.nan, math.inf, True, "5"])
def test_a_ceiling_that_is_no_rate_is_a_configuration_error(value: object) -> None:
    said = "max_rate must be a positive number of requests a second"
    with pytest.raises(ConfigurationError, match=said):
        JobsClient("k" * 20, base_url="http://127.0.0.1:1", max_rate=value)  # type: ignore[arg-type]

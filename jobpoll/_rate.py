"""`RateControl`: how fast one client's requests may leave, learned from what the service
accepts. The rules only, with no I/O; the client's `_gate` sleeps as they say.

The model. A gateway in front of the service holds each key to some rate (a token bucket)
and refuses what goes over it (429, or 503). The controller is off, and costs nothing, until
the first refusal (or from the start when the user gives a ceiling, `max_rate`). From then
on requests leave evenly spaced at the controller's rate:

- **A cut** on a refused request that was sent since the last cut (but for a stray one:
  a 503 right after an accepted answer, see `throttled`, and for noise, see `weigh`): to
  `BETA` of the rate
  the service was measured to accept just before (the newest accepted answers since the
  cut), which becomes the `peak`. With too little measured (an outage: nothing accepted) it
  halves instead, down to `MIN_RATE`, and the peak is kept. Refusals of requests sent before
  the cut are the same storm, and cut nothing.
- **Growth** between cuts, from the first accepted answer after the cut (an outage, where
  nothing is accepted, grows nothing), on a cubic curve (as TCP's CUBIC): fast at first, flat
  as it nears the peak, which it reaches after `PROBE_SECONDS`, or after `PROBE_REQUESTS`
  requests at a low rate (`PROBE_SECONDS_MOST` at the most); then it probes above the peak,
  slowly at first, faster the longer nothing is refused, so that a limit that was raised is
  found again within seconds. Above the peak it grows by a share of the peak (`BETA`'s
  complement after each span it took to grow back to it, cubed), and at least by `SCALE`
  requests a second after a second, cubed (botocore's and CUBIC's own curve): a peak that is a
  small share of the limit (another client of the key holds the rest, or the client sent
  little) is left behind in seconds, and clients that share a limit grow by like amounts, so
  the smaller gains on the larger at each cut (as TCP's flows do). Above the peak it grows
  only while the service's answers keep up with it (a client sending less than its rate learns
  nothing of the limit). While no peak was measured (after the first refusal) the rate doubles
  each `DOUBLING` seconds.
- **`Retry-After`** holds the rate (no growth) for as long as it says, up to `MAX_HOLD`; the
  request it answered waits that long (the wait's rules), but the others go on at the cut
  rate.
- **The ceiling** `max_rate` caps the rate at all times.

Why this shape: a probe above the limit costs about one refused request, so spacing probes by
`PROBE_REQUESTS` keeps refusals near one request in a hundred (at a peak of a few requests a
second, `PROBE_SECONDS_MOST` and `SCALE`'s growth space them closer: 7% refused at 3 a second,
a known shortfall); the rate spends most of its time near the peak (a cubic's plateau), so the
accepted rate stays within a few percent of the limit; and measuring what was accepted (not
what was sent) finds the limit in one cut even after a burst far above it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable

import attrs

from jobpoll._state import MIN_RATE, RateState

#: The share of the measured accepted rate that a cut sets the rate to.
BETA = 0.9
#: A cut with too little measured halves the rate.
BACKOFF = 0.5
#: The rate grows back to the peak in at least this many seconds...
PROBE_SECONDS = 3.0
#: ...and over at least this many requests, but in no more than `PROBE_SECONDS_MOST`: a
#: peak measured low (a client that sent little, or that shares the limit with a larger one)
#: is grown back to within seconds.
PROBE_REQUESTS = 30.0
PROBE_SECONDS_MOST = 10.0
#: Above the peak, the rate grows at least by this many requests a second times the seconds
#: spent there, cubed (botocore's adaptive retry mode and CUBIC use the same constant).
SCALE = 0.4
#: The answers of the last this many seconds tell whether the service keeps up with the rate.
RECENT_SECONDS = 10.0
#: The longest a `Retry-After` holds the rate (its request waits as long as the wait's policy
#: allows): a client whose other requests are accepted meanwhile goes on learning.
MAX_HOLD = 30.0
#: How early a request may leave its slot: an event loop's timers are about a millisecond
#: coarse, and a sleep per request that always wakes late would never reach a high rate.
#: The slots keep their spacing, so the rate holds on average.
SLACK = 0.001
#: The first refusal's rate when little was accepted before it (one refused at once, say):
#: a start that doubling leaves behind within seconds.
FIRST_RATE = 1.0
#: While no peak was measured, the rate doubles in this many seconds.
DOUBLING = 1.0
#: The accepted rate is measured over the answers of the last `MEASURE_SECONDS`, or the
#: newest `MIN_MEASURED` when fewer came in that time.
MEASURE_SECONDS = 1.0
MIN_MEASURED = 4
#: Answers kept, newest last: enough for a second at a few hundred requests a second.
KEPT = 256
#: A noisy service (one that refuses requests below the peak, where a rate limit would not)
#: is cut only when its refusals since the last cut are at least this share of the answers,
#: counted over at least `MIN_COUNTED` of them (5 refusals): the 5% a client may lose.
SHARE = 0.05
MIN_COUNTED = 100
#: A refusal taken for noise marks the service noisy for this long.
NOISY_SECONDS = 30.0


@attrs.define(eq=False)
class RateControl:
    """The rate of one client (or one queue's workers), with its rules. `sent_at`: when the
    last request left (the next one may leave one spacing later).

    `cuts` counts the cuts: a request records it when it leaves, and a refusal of a request
    sent before the last cut is ignored. `hold_until`: a `Retry-After` holds the rate until
    then. `answers`: the times of the newest accepted answers (since the last cut, once
    there was one); `refused_last`: whether the last answer was a refusal. `growing_since`:
    the first answer accepted since the last cut; the rate grows from then (not while
    nothing is accepted). `accepted_since_cut`, `refused_since_cut`, `accepted_in_a_row`,
    `suspect` and `noisy_until` tell noise from a limit (`weigh`), unless `tells_noise` is
    False (every refusal sent since the last cut cuts).
    """

    max_rate: float | None = None
    state: RateState = attrs.field(factory=RateState)
    tells_noise: bool = True
    cuts: int = 0
    hold_until: float = -math.inf
    sent_at: float = -math.inf
    started_at: float | None = None
    accepted: int = 0
    refused_last: bool = False
    growing_since: float | None = None
    answers: deque[float] = attrs.field(factory=lambda: deque(maxlen=KEPT))
    accepted_since_cut: int = 0
    refused_since_cut: int = 0
    accepted_in_a_row: int = 0
    suspect: bool = False
    noisy_until: float = -math.inf

    def __attrs_post_init__(self) -> None:
        if self.max_rate is not None and self.state.rate is None:
            # At once at the ceiling, no peak measured (a ceiling below the floor still caps).
            self.state.rate = max(self.max_rate, MIN_RATE)

    @property
    def limited(self) -> bool:
        """Whether requests are held to a rate (a refusal was seen, or a ceiling given)."""
        return self.state.rate is not None

    def rate_at(self, now: float) -> float:
        """The rate requests may leave at, now (`math.inf` when not held to one)."""
        state = self.state
        base = state.rate
        if base is None:
            return math.inf
        since = self.growing_since
        elapsed = -1.0 if since is None else now - max(since, self.hold_until)
        peak = state.peak
        if elapsed <= 0:
            rate = base
        elif peak is None:
            rate = base * 2.0 ** min(elapsed / DOUBLING, 64.0)
        else:
            span = min(max(PROBE_SECONDS, PROBE_REQUESTS / peak), PROBE_SECONDS_MOST)
            x = elapsed / span - 1.0
            if x <= 0:
                rate = peak + (peak - min(base, peak)) * x**3
            else:
                above = min(elapsed - span, 1e4)
                rate = peak + max(peak * (1.0 - BETA) * min(x, 1e4) ** 3, SCALE * above**3)
                rate = min(rate, max(peak, 2.0 * self.recent_rate(now)))
        return rate if self.max_rate is None else min(rate, self.max_rate)

    def delay(self, now: float) -> float:
        """The seconds before the next request may leave: one spacing at today's rate after
        the last one's slot (so that a rate that grows shortens the wait at once), less
        `SLACK`."""
        rate = self.rate_at(now)
        if rate == math.inf:
            return 0.0
        return max(0.0, self.sent_at + 1.0 / rate - SLACK - now)

    def sent(self, now: float) -> None:
        """A request leaves: its slot is one spacing after the last one's, or now if it is
        late (a busy event loop). A late one lets none catch up: with a bucket of one token
        the two would be one too many."""
        if self.started_at is None:
            self.started_at = now
        rate = self.rate_at(now)
        self.sent_at = now if rate == math.inf else max(self.sent_at + 1.0 / rate, now)

    def answered(self, now: float) -> None:
        """A request was accepted (answered with anything but a throttle)."""
        self.accepted += 1
        self.heard(now)
        self.answers.append(now)
        if self.growing_since is None and self.state.rate is not None:
            self.growing_since = now

    def heard(self, now: float) -> None:
        """An accepted answer, counted towards the share refused (`answered` keeps its time
        too; a SAQ worker's answers are timed in Redis). A refusal suspected of being noise
        is taken for noise once 1/`SHARE` answers in a row were accepted after it."""
        self.refused_last = False
        self.accepted_since_cut += 1
        self.accepted_in_a_row += 1
        if self.suspect and self.accepted_in_a_row * SHARE >= 1.0:
            self.suspect = False
            self.noisy_until = now + NOISY_SECONDS

    def throttled(
        self, now: float, sent_in: int, retry_after: float | None = None, *, certain: bool = True
    ) -> bool:
        """A request sent in cut `sent_in` was refused: cut the rate, unless a cut came since
        (the same storm) or the refusal is noise (`weigh`). `retry_after` holds the rate
        for that long after a cut or in its storm; noise holds nothing (its request waits, as
        the wait's rules say, but at random a hold would keep the rate from growing for good).
        `certain`: a 429; else (a 503, a refused connection) a refusal right after an accepted
        answer is taken for a stray one (a sick instance behind a balancer, not the key's
        limit) and cuts nothing. Whether it cut."""
        stray = not certain and not self.refused_last
        self.refused_last, self.accepted_in_a_row, self.suspect = True, 0, False
        storm = sent_in != self.cuts
        if not (stray or storm):
            self.refused_since_cut += 1
            if self.weigh(now):
                self.cut(now)
                self.hold(now, retry_after)
                return True
        if storm:
            self.hold(now, retry_after)
        return False

    def hold(self, now: float, retry_after: float | None) -> None:
        """No growth for the `Retry-After` the service asked for, up to `MAX_HOLD`."""
        if retry_after is not None:
            self.hold_until = max(self.hold_until, now + min(retry_after, MAX_HOLD))

    def cut(self, now: float) -> None:
        """Cut the rate: to `BETA` of the accepted rate measured, else by `BACKOFF`."""
        state = self.state
        # Before the first cut, a measure of the client's own pace only if it was busy just
        # now (`measured`): a few old answers, or all at once at its start, measure nothing,
        # and then the first cut starts low and doubles.
        measured = self.measured(now, own_pace=state.rate is None)
        if measured is not None:
            state.peak = max(measured, MIN_RATE)
            rate = BETA * measured
        elif state.rate is None:  # the first refusal: what was accepted since the start
            since = now - (now if self.started_at is None else self.started_at)
            rate = max(self.accepted / max(since, 1.0), FIRST_RATE)
        else:
            rate = BACKOFF * self.rate_at(now)
        if self.max_rate is not None:
            rate = min(rate, self.max_rate)
        state.rate = max(rate, MIN_RATE)
        state.cut_at = now
        self.growing_since = None
        self.cuts += 1
        self.since_cut()
        self.sent_at = now  # the bucket is empty: the next request one spacing from now

    def weigh(self, now: float) -> bool:
        """Whether the refusals since the last cut say the rate is over a limit (else they are
        taken for noise, and cut nothing).

        A token bucket refuses nothing below its rate: once a cut has left the rate below the
        limit, the next refusal comes when the rate is back near the peak, and it says the
        limit is there. Noise (a service that refuses a share of requests at random, at any
        rate: a gateway's sick instance, a limiter that counts loosely) refuses also on the
        low half of the way back, and sparsely: such a refusal is `suspect`, and noise once
        1/`SHARE` answers in a row were accepted after it (`heard`). Cutting on noise would
        drive the rate down for good, a little at each refusal. So on the low half, and
        everywhere for `NOISY_SECONDS` after noise was seen, refusals are a limit only when
        they are most of the answers since the cut (two at least: an outage, a limit far
        below) or at least `SHARE` of them (counted over `MIN_COUNTED` at least): a limit
        that was lowered, or a cut on a measure too high (after a burst), soon refuses that
        many.
        """
        state = self.state
        if state.rate is None or state.peak is None or not self.tells_noise:
            return True  # nothing to weigh against: the first refusals
        refused, accepted = self.refused_since_cut, self.accepted_since_cut
        noisy = now <= self.noisy_until
        low = self.rate_at(now) < (state.rate + state.peak) / 2
        if not noisy and not low:
            return True
        if refused > max(accepted, 1) or refused >= SHARE * max(accepted + refused, MIN_COUNTED):
            return True  # most refused (an outage, a limit far below), or a share of many
        self.suspect = low
        return False

    def since_cut(self) -> None:
        """Forget what was counted before a cut."""
        self.answers.clear()
        self.accepted_since_cut = self.refused_since_cut = 0
        self.suspect = False

    def measured(self, now: float, *, own_pace: bool = False) -> float | None:
        """The rate the service accepted, from the newest answers since the last cut: those
        of the last `MEASURE_SECONDS`, or the newest `MIN_MEASURED` when fewer came in that
        time; None with fewer than that. `own_pace`: the answers of a client not yet held to
        any rate, which measure the service only when they are recent and not all at once:
        `MIN_MEASURED` in the last `MEASURE_SECONDS`, over half of it at least."""
        count = 0
        newest = oldest = now
        for at in reversed(self.answers):
            if at < now - MEASURE_SECONDS and (own_pace or count >= MIN_MEASURED):
                break
            newest = at if count == 0 else newest
            oldest = at
            count += 1
        if count < MIN_MEASURED or newest - oldest <= (MEASURE_SECONDS / 2 if own_pace else 0):
            return None
        return (count - 1) / (newest - oldest)

    def recent_rate(self, now: float) -> float:
        """The accepted rate over the answers of the last `RECENT_SECONDS` (0 with fewer than
        two)."""
        count, oldest = 0, now
        for at in reversed(self.answers):
            if at < now - RECENT_SECONDS:
                break
            count, oldest = count + 1, at
        if count < 2:
            return 0.0
        return (count - 1) / max(now - oldest, 1e-3)

    def adopt(
        self, state: RateState, cuts: int, hold_until: float, answers: Iterable[float]
    ) -> None:
        """Go on from a state shared with other controllers and kept elsewhere (a SAQ queue's
        workers', in Redis), with the times of the accepted answers it counted since this one
        last looked, oldest first. The answers of a cut before are dropped; with no rate
        shared, the ceiling is the rate (as at the start)."""
        if cuts != self.cuts:
            self.since_cut()
            self.growing_since = None
        if state.rate is None and self.max_rate is not None:
            state = attrs.evolve(state, rate=max(self.max_rate, MIN_RATE))
        self.state = state
        self.cuts = cuts
        self.hold_until = hold_until
        # Several controllers' answers come in the order they were counted, not quite the
        # order of their times: the measures read them oldest first.
        merged = sorted([*self.answers, *answers])
        self.answers.clear()
        self.answers.extend(merged[-KEPT:])
        if self.growing_since is None and self.answers:
            self.growing_since = self.answers[0]  # the first accepted since the cut

    def restore(self, saved: RateState) -> None:
        """Go on from a rate learned before (a checkpoint's), unless this one learned its own."""
        if self.cuts == 0:
            rate = saved.rate
            if rate is not None and self.max_rate is not None:
                rate = max(min(rate, self.max_rate), MIN_RATE)
            self.state = RateState(rate=rate, peak=saved.peak, cut_at=saved.cut_at)

"""`PollPolicy`: when to poll a job again, and which failures to ride out.

Blind schedule: the delays between polls grow exponentially to a cap (`backoff.expo`), each
shortened by a random share of itself (jitter), so that many waiters started together drift
apart instead of polling in step. Unlike backoff's `full_jitter`, the share is bounded
(`jitter`), so the first waits never collapse towards zero; and the random numbers come from
the policy's own `rng`, so a test can make a schedule repeat exactly.

Progress-aware schedule (the default): the service reports `progress` in percent, so from two
readings a pace can tell how fast a job moves and poll close to its predicted end instead of
every 30 s. How, and the guards that keep a wrong prediction cheap, are in `Pace`.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import attrs
import backoff

from jobpoll._errors import ConfigurationError

if TYPE_CHECKING:
    from jobpoll._models import Job

__all__ = ["Pace", "PollPolicy"]

# The progress-aware schedule's constants (see `Pace`); tuned on benchmarks/bench_schedule.py.
#: Share of the predicted time left that one wait covers while the end is far.
_AIM = 0.8
#: No wait longer than this share of the time the wait has watched the job so far...
_AGE_SHARE = 1.0
#: ... or this share once a new estimate has confirmed the one before it (see `Pace`).
_CONFIRMED_AGE_SHARE = 2.0
#: An estimate agrees with the one before when their ends differ by at most the tolerance or
#: this share of the time left.
_AGREEMENT = 0.1
#: Progress that has not moved for this many of its steps at the estimated rate is a miss:
#: no wait is then longer than the time since it last moved.
_MISSED_STEPS = 2
#: Once the end may come, polls come every this share of the job's age (within initial and
#: max_interval): the lateness accepted, relative to how long the job has run.
_TOLERANCE = 0.05
#: Past the predicted end, the delay grows by `factor` up to this many times max_interval.
_OVERDUE_CAP = 1.5
#: A job that has shown no progress yet is polled at least every this share of its age, up
#: to `_SILENT_CAP` times max_interval: silent for 15 minutes, about every 45 s.
_SILENCE = 0.05
_SILENT_CAP = 1.5
#: The last wait before the predicted end aims this share of the tolerance past it.
_FINAL = 0.5
#: Progress that moves in steps of at least this many percent has its moves dated (see `Pace`)
#: and, once the slowest steady pace they allow is within `_DATED` times the fastest and the
#: end at most `_DATED_STEPS` steps away at that pace, one wait aims just past the end.
_COARSE = 5
_DATED = 2.0
_DATED_STEPS = 4


def _positive(_policy: PollPolicy, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigurationError(
            f"{attribute.name} must be a positive number of seconds, got {value!r}"
        )


def _not_negative(_policy: PollPolicy, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise ConfigurationError(
            f"{attribute.name} must be a number of seconds, 0 or more, got {value!r}"
        )


def _check_factor(_policy: PollPolicy, _attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value < math.inf:
        raise ConfigurationError(f"factor must be a number of 1 or more, got {value!r}")


def _check_max_interval(policy: PollPolicy, attribute: attrs.Attribute[Any], value: float) -> None:
    _positive(policy, attribute, value)
    if value < policy.initial:
        raise ConfigurationError(
            f"max_interval ({value!r} s) must be at least initial ({policy.initial!r} s)"
        )


def _check_jitter(_policy: PollPolicy, _attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigurationError(f"jitter must be a fraction from 0 to 1, got {value!r}")


def _check_max_failures(_policy: PollPolicy, _attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"max_failures must be a whole number of 1 or more, got {value!r}")


def _check_bool(_policy: PollPolicy, attribute: attrs.Attribute[bool], value: bool) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{attribute.name} must be True or False, got {value!r}")


def _check_max_estimated_interval(
    policy: PollPolicy, attribute: attrs.Attribute[Any], value: float
) -> None:
    _positive(policy, attribute, value)
    if value < policy.max_interval:
        raise ConfigurationError(
            f"max_estimated_interval ({value!r} s) must be at least max_interval "
            f"({policy.max_interval!r} s)"
        )


def _check_stall_timeout(
    policy: PollPolicy, attribute: attrs.Attribute[Any], value: float | None
) -> None:
    if value is not None:
        _positive(policy, attribute, value)


def _check_callable(_policy: PollPolicy, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not callable(value):
        raise ConfigurationError(f"{attribute.name} must be callable, got {value!r}")


def _shared_random() -> float:
    # Looked up at each call, not bound at import: a pickled policy then refers to the random
    # module of the process it lands in, rather than carrying a copy of one generator's state
    # that would make every worker draw the same jitter.
    return random.random()


@attrs.frozen(kw_only=True)
class PollPolicy:
    """How `wait_for_job` paces its polls and which failures it rides out.

    The defaults suit jobs that take seconds to hours. The first poll is immediate. Until the
    job's progress moves, the next come after 2, 4, 8, 16 seconds, doubling each time up to
    one every 30 seconds (the blind schedule, `delays()`). Once progress moves, the policy
    estimates when the job will end and aims its polls there (see `Pace`): a linear job of two
    hours then costs about 25 polls instead of about 250, and is seen done about as soon. Each
    delay is shortened by up to 20% at random, so waiters started together drift apart.
    `progress_aware=False` keeps the blind schedule throughout.

    The blind schedule doubles from 2 s, rather than growing 1 s by half, because the
    progress-aware schedule falls back on it until progress moves: that saves about 3 polls on
    every job longer than a minute, and lets the default meet its target in
    benchmarks/bench_schedule.py (at least 3x fewer polls than plain doubling backoff, with a
    lower p95 latency) on 6 of its 7 shapes of progress instead of 2 (medians of seeds 1-3);
    the seventh, stepwise progress, meets it too since its moves are dated (see `Pace`).

    Change one option and keep the rest with `attrs.evolve(PollPolicy(), max_interval=60)`.

    Args:
        initial: seconds between the first poll and the second (2).
        factor: how much each delay grows over the one before (2: doubling; 1 for a fixed
            interval).
        max_interval: the longest delay of the blind schedule, in seconds: after failed polls,
            and while the end could come at any moment (jitter never exceeds it; only a
            server's `Retry-After` may ask for longer, see `max_retry_after`). The
            progress-aware schedule stretches it by half for a job silent for a quarter of an
            hour, or stuck past its predicted end.
        jitter: the share of each delay drawn at random: a delay `d` becomes a number from
            `d * (1 - jitter)` to `d`. 0 is no jitter; 1 is backoff's "full jitter", which lets
            the first waits fall close to 0.
        max_failures: how many failed polls in a row end the wait: the one that reaches it
            is raised, those before it are polled again (transport errors, 429, 5xx, an
            intermediary's HTML page); 1 raises the first. Any answer that is a job resets
            the count.
        max_retry_after: the longest wait, in seconds, that a server's `Retry-After` is obeyed
            for; a longer one is cut to this, so a misconfigured header cannot park a waiter
            for a day.
        not_found_grace: seconds from the start of a wait during which a 404 for a job not seen
            yet is taken for a visibility delay and polled again, instead of raising `NotFound`
            at once. 0 by default: the service answers a job's creation with the job itself, so
            a 404 is most often a wrong id. Set it when you wait on ids handed over by another
            system right after creation.
        first_contact_grace: seconds a wait rides out connection failures (refused, timed
            out, no route) while its client has never had an answer from the server: once
            they pass, the failure is raised instead of polled again up to `max_failures`
            (10 by default: a server that cannot be reached from the start is most often a
            wrong base URL or port, and minutes of silent retries help nobody). Once the
            client has had any answer, an outage is ridden out as usual.
        stall_timeout: when set, raise `JobStalled` once neither status nor progress has changed
            for this many seconds (checked at each poll). Off by default: a job may sit queued
            for hours and still be fine.
        progress_aware: aim polls at the end predicted from the progress the job reports
            (True, the default); False polls on the blind schedule whatever the job says.
        max_estimated_interval: the longest wait a prediction may ask for, in seconds (600,
            at least `max_interval`). Waits this long happen only while the prediction puts
            the end far away, and never exceed the time the wait has already watched the job,
            or twice that once a second prediction agreed with the first (so a wrong
            prediction costs at most about the job's own age). Lower it to bound the
            lateness when a job may end abruptly long before its progress says.
        clock: the monotonic clock the deadline, the grace and the stall guard are measured on.
        sleep: how to wait between polls; `asyncio.sleep` by default. With `clock`, what lets
            tests run a schedule in virtual time (see `jobpoll.testing.VirtualClock`).
        rng: a source of uniform numbers in [0, 1) for the jitter, e.g.
            `random.Random(7).random` for a schedule that repeats exactly.

    Raises:
        ConfigurationError: an option out of range (also a `ValueError`).
    """

    initial: float = attrs.field(default=2.0, validator=_positive)
    factor: float = attrs.field(default=2.0, validator=_check_factor)
    max_interval: float = attrs.field(default=30.0, validator=_check_max_interval)
    jitter: float = attrs.field(default=0.2, validator=_check_jitter)
    max_failures: int = attrs.field(default=10, validator=_check_max_failures)
    max_retry_after: float = attrs.field(default=300.0, validator=_not_negative)
    not_found_grace: float = attrs.field(default=0.0, validator=_not_negative)
    first_contact_grace: float = attrs.field(default=10.0, validator=_not_negative)
    stall_timeout: float | None = attrs.field(default=None, validator=_check_stall_timeout)
    progress_aware: bool = attrs.field(default=True, validator=_check_bool)
    max_estimated_interval: float = attrs.field(
        default=600.0, validator=_check_max_estimated_interval
    )
    # Not part of equality: two policies are equal when they schedule alike.
    clock: Callable[[], float] = attrs.field(
        default=time.monotonic, validator=_check_callable, repr=False, eq=False
    )
    sleep: Callable[[float], Awaitable[object]] = attrs.field(
        default=asyncio.sleep, validator=_check_callable, repr=False, eq=False
    )
    rng: Callable[[], float] = attrs.field(
        default=_shared_random, validator=_check_callable, repr=False, eq=False
    )

    def pace(self) -> Pace:
        """A new wait's place in this policy's schedule; each wait (each job) has its own."""
        return Pace(self)

    def delays(self) -> Iterator[float]:
        """The delays between polls of a job that tells nothing, jitter included; endless.

        `list(itertools.islice(policy.delays(), 10))` shows a policy's first ten.
        """
        pace = self.pace()
        while True:
            yield pace.failed(0.0)

    def _nominal(self) -> Iterator[float]:
        # backoff.expo(base, factor, max_value) yields factor * base**n, then max_value for
        # ever; it is primed by one next() first, as backoff itself does.
        nominal = backoff.expo(base=self.factor, factor=self.initial, max_value=self.max_interval)
        next(nominal)
        return nominal

    def _jittered(self, delay: float) -> float:
        jitter = self.jitter
        return delay * (1.0 - jitter * self.rng()) if jitter else delay

    def retry_delay(self, scheduled: float, retry_after: float | None) -> float:
        """The delay before polling again after a failure: the scheduled one, or longer when
        the server's `Retry-After` asks for it (cut to `max_retry_after`)."""
        if retry_after is None:
            return scheduled
        return max(scheduled, min(retry_after, self.max_retry_after))


class Pace:
    """One wait's place in its policy's schedule: the delay before each next poll.

    A wait (or each job of a fan-out) asks its pace after every poll: `answered` with the job
    the poll saw, `failed` when it saw none. The delay is computed from those observations
    and the policy alone, so a schedule can be replayed on made-up observations and a
    virtual clock. A pace is a few numbers (slots, nothing that grows per poll), since a
    fan-out holds one per job.

    With `progress_aware` (the default), `answered` works in three regimes:

    - **Blind**, until the job's progress has been seen to move (and again after its status
      changes or its progress goes back, which start a new phase): the blind schedule of
      `delays()`, as `progress_aware=False` would poll, except that a job silent for long is
      polled at least every 5% of its age, up to 1.5 x `max_interval` (45 s by default).
    - **Estimated**, once progress moved: the rate comes from a window over about the last
      half of the moves, each taken when its value was first seen (so a plateau, or the time
      between two steps, counts in full), or from the window's recent half when that is
      faster (a job that speeds up). The end is the earliest that rate allows given that a
      reading is rounded down to the steps progress moves in (e.g. 10 for 10, 20, 30) and was
      reached after the reading before. While that end is far, each wait covers 80% of the
      time left to it, so the polls close in on it; the wait that would get within the
      tolerance aims just past the end instead, so one poll catches a job that keeps its pace.
      No wait is longer than the time the wait has watched the job so far (twice that once a
      new estimate agreed with the one before it), nor `max_estimated_interval`; and once
      progress has stood still for two of its steps at the estimated rate (a plateau, a stall
      before a jump), nor than the time it has stood still. A job that speeds up, or ends
      abruptly, is thus seen at most about its own age (and at most 10 minutes) late, and in
      practice far less.
    - **Overdue**, once the earliest end has come without the end: the end may come at any
      moment, so polls come every tolerance (5% of the job's age, from `initial` to
      `max_interval`), growing by `factor` while progress stands still, up to
      1.5 x `max_interval`. A stall at 99% thus costs about one poll per 45 s, as blind
      polling would. Any move of progress makes a new estimate.

    Progress in coarse steps (readings all multiples of 5 or more, e.g. 10, 20, 30) says
    little between its moves, and a reading tells only that its step came some time since
    the poll before: on a long job, minutes. So each poll also bounds the seconds per percent
    a steady pace may take, relative to the phase's first move (dated closely by the blind
    schedule): the step it reads came by then, the next one not yet. The end is then at
    least what the slowest such pace gives, and the overdue window that follows is narrow.
    Once those bounds are within a factor 2 of each other, the end at most 4 steps away and
    no later than the fastest such pace allows, one wait aims just past the end instead of
    closing in on it (readings before the end would tell nothing new); bounds that disagree
    (not a steady pace) are no longer used in that phase.

    The estimate uses the readings only, never the wall clock or other jobs, so a schedule is
    deterministic given the policy's `rng` and the times passed in.
    """

    __slots__ = (
        "_anchor_p",
        "_anchor_t",
        "_confirmed",
        "_end",
        "_first_hi",
        "_first_lo",
        "_first_p",
        "_last_p",
        "_last_t",
        "_mid_p",
        "_mid_t",
        "_moved_t",
        "_nominal",
        "_overdue",
        "_per_hi",
        "_per_lo",
        "_policy",
        "_start",
        "_status",
        "_step",
    )

    def __init__(self, policy: PollPolicy) -> None:
        self._policy = policy
        self._nominal = policy._nominal()
        self._status: str | None = None  # None until the first answer
        self._start = 0.0  # when the first answer came: the job's age is counted from it
        self._last_t, self._last_p = 0.0, -1  # the last reading
        self._moved_t = 0.0  # when the last reading's progress was first seen
        # The rate window, over readings where progress was first seen at a value: from the
        # anchor (at first the phase's first reading) to the latest; the mid reading becomes
        # the anchor once it is the older half, so the window spans about the last half of
        # the moves, and a plateau or the time between steps stays inside it.
        self._anchor_t, self._anchor_p = 0.0, 0
        self._mid_t, self._mid_p = 0.0, -1  # -1: no move seen in this phase
        self._step = 0  # the steps progress moves in: the gcd of the readings
        # Coarse steps: the phase's first move (its value, and the polls around it), and the
        # bounds on the seconds per percent that the moves since allow at a steady pace.
        self._first_lo, self._first_hi, self._first_p = 0.0, 0.0, 0
        self._per_lo, self._per_hi = 0.0, math.inf
        self._end = math.nan  # the earliest plausible end, from the last move
        self._confirmed = False  # whether that end agreed with the estimate before it
        self._overdue = 0.0  # the last delay past that end; 0 before it

    def answered(self, now: float, job: Job) -> float:
        """The delay after a poll at `now` that saw `job` (not a terminal one)."""
        policy = self._policy
        if not policy.progress_aware:
            return policy._jittered(next(self._nominal))
        progress = job.progress
        if job.raw_status != self._status or progress < self._last_p:
            # The first answer, or a new phase: what was learnt of the rate no longer holds,
            # and the phase may be short, so the blind schedule starts again from `initial`.
            if self._status is None:
                self._start = now
            else:
                self._nominal = policy._nominal()
            self._status = job.raw_status
            self._anchor_t, self._anchor_p = now, progress
            self._mid_p = -1
            self._end = math.nan
            self._confirmed = False
            self._overdue = 0.0
            self._last_t, self._last_p, self._moved_t = now, progress, now
            return policy._jittered(self._blind(now))
        if progress > self._last_p:
            self._estimate(now, progress)
        elif self._step >= _COARSE and self._mid_p >= 0:
            self._dated(now, progress)  # the pace is no faster than this reading allows
        self._last_t, self._last_p = now, progress
        if self._mid_p < 0:
            return policy._jittered(self._blind(now))
        return policy._jittered(self._estimated(now))

    def failed(self, now: float) -> float:
        """The delay after a poll at `now` that failed (before any `Retry-After`)."""
        return self._policy._jittered(next(self._nominal))

    def _estimate(self, now: float, progress: int) -> None:
        # Progress moved since the last reading, to `progress`: a new estimate of the end.
        if self._mid_p < 0:
            self._mid_t, self._mid_p = now, progress
            self._first_lo, self._first_hi, self._first_p = self._last_t, now, progress
            self._per_lo, self._per_hi = 0.0, math.inf
        elif now - self._mid_t >= self._mid_t - self._anchor_t:
            self._anchor_t, self._anchor_p = self._mid_t, self._mid_p
            self._mid_t, self._mid_p = now, progress
        step = math.gcd(self._step, progress)
        if step != self._step:
            self._per_lo = 0.0  # its bound assumed a longer step
        self._step = step
        # The rate over the window, or over its recent half when that is faster (a job that
        # speeds up): both from readings first seen at their value, so a plateau or the
        # time between two steps counts in full.
        rate = (progress - self._anchor_p) / (now - self._anchor_t)
        if self._anchor_t < self._mid_t < now:
            rate = max(rate, (progress - self._mid_p) / (now - self._mid_t))
        # The reading is rounded down to a step and was reached after the last reading:
        # the earliest end those allow at that rate.
        left = 100 - progress
        end = max(self._last_t + left / rate, now + (left - step) / rate)
        if step >= _COARSE:
            end = max(end, self._dated(now, progress))
        previous = self._end
        self._confirmed = abs(end - previous) <= max(
            self._tolerance(now), _AGREEMENT * (end - now)
        )  # False when there was no estimate before (nan)
        # When progress was reached, at a guess: at the previous estimate's rate, if that
        # puts it before now (the job fell behind that estimate, then stood still).
        moved = now
        if previous > self._moved_t:
            before = (100 - self._last_p) / (previous - self._moved_t)
            guess = self._last_t + (progress - self._last_p) / before
            if guess < (self._last_t + now) / 2:
                moved = guess
        self._moved_t = moved
        self._end = end
        self._overdue = 0.0

    def _dated(self, now: float, progress: int) -> float:
        # Coarse steps: at `now` progress had reached `progress` and not the step after, and
        # its first move came between the two polls around it; so at a steady pace, each
        # poll bounds the seconds per percent, and the bounds of all polls hold together.
        # The earliest end the slowest pace they allow gives; -inf once they disagree (not a
        # steady pace).
        moved = progress - self._first_p
        self._per_lo = max(self._per_lo, (now - self._first_hi) / (moved + self._step))
        if moved > 0:
            self._per_hi = min(self._per_hi, (now - self._first_lo) / moved)
        if self._per_lo > self._per_hi:
            return -math.inf
        return self._first_lo + (100 - self._first_p) * self._per_lo

    def _blind(self, now: float) -> float:
        policy = self._policy
        stretched = min(_SILENCE * (now - self._start), _SILENT_CAP * policy.max_interval)
        return max(next(self._nominal), stretched)

    def _tolerance(self, now: float) -> float:
        policy = self._policy
        return min(max(policy.initial, _TOLERANCE * (now - self._start)), policy.max_interval)

    def _estimated(self, now: float) -> float:
        policy = self._policy
        tolerance = self._tolerance(now)
        remaining = self._end - now
        if remaining > tolerance:
            share = _CONFIRMED_AGE_SHARE if self._confirmed else _AGE_SHARE
            longest = min(share * (now - self._start), policy.max_estimated_interval)
            still = now - self._moved_t
            rate = (100 - self._last_p) / (self._end - self._moved_t)
            if still * rate > _MISSED_STEPS * self._step:
                # Progress should have moved by now and has not: the rate no longer holds
                # (a plateau, or a stall before a jump); wait no longer than it stood still.
                longest = min(longest, max(tolerance, still))
            wait = _AIM * remaining
            per_lo, per_hi = self._per_lo, self._per_hi
            if (
                self._step >= _COARSE
                and 0 < per_lo <= per_hi <= _DATED * per_lo
                and remaining <= _DATED_STEPS * self._step * per_hi
                and self._first_hi + (100 - self._first_p) * per_hi >= self._end
            ):
                # Coarse steps whose moves date a steady pace, a few steps from the end: the
                # readings before it tell little more, so one wait aims past the earliest
                # end, longer by the jitter to come (up to a tolerance) so as to land there.
                landing = 1.0 - policy.jitter
                wait = max(
                    remaining + _FINAL * tolerance,
                    min(remaining / landing if landing else math.inf, remaining + tolerance),
                )
            elif remaining - wait < tolerance:
                wait = remaining + _FINAL * tolerance
            return max(tolerance, min(wait, longest))
        if self._overdue:
            self._overdue = min(self._overdue * policy.factor, _OVERDUE_CAP * policy.max_interval)
        self._overdue = max(self._overdue, tolerance)
        return self._overdue

"""`PollPolicy`: when to poll a job again, and which failures to ride out.

Blind schedule: the delays between polls grow exponentially to a cap (`backoff.expo`), each
shortened by a random share of itself (jitter), so that many waiters started together drift
apart instead of polling in step. Unlike backoff's `full_jitter`, the share is bounded
(`jitter`), so the first waits never collapse towards zero; and the random numbers come from
the policy's own `rng`, so a test can make a schedule repeat exactly.

Progress-aware schedule (the default): the service reports `progress` in percent, so every
reading bounds how soon a job can end, given how fast it has moved; a pace waits until that
earliest end and polls closely only from there, instead of every 30 s. The model, its three
options (`drift`, `early_end`, `lateness`) and the guards that keep a wrong prediction cheap
are in `Pace`.
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

__all__ = ["Pace", "PollPolicy", "longest_delay"]


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


def _check_factor(_policy: PollPolicy, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value < math.inf:
        raise ConfigurationError(f"{attribute.name} must be a number of 1 or more, got {value!r}")


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


def _check_share(_policy: PollPolicy, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ConfigurationError(
            f"{attribute.name} must be a fraction above 0, up to 1, got {value!r}"
        )


def _check_early_end(_policy: PollPolicy, _attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 100:
        raise ConfigurationError(f"early_end must be a whole percent from 0 to 99, got {value!r}")


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


def _blind_table(policy: PollPolicy) -> tuple[float, ...]:
    # The blind delays before jitter, filled once per policy from `backoff.expo` (which yields
    # initial * factor**n, then max_interval for ever) up to the first that repeats: every
    # pace indexes this table, so a pace holds an index rather than a generator. Options out
    # of range give no table; the validators, which run next, refuse them.
    delays: list[float] = []
    try:
        nominal = backoff.expo(
            base=policy.factor, factor=policy.initial, max_value=policy.max_interval
        )
        next(nominal)  # primed, as backoff itself does
        for delay in nominal:
            delays.append(delay)
            if delay >= policy.max_interval or len(delays) > 64 or delays[-2:-1] == [delay]:
                break
    except (TypeError, ValueError, OverflowError):
        return ()
    return tuple(delays)


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
    one every 30 seconds (the blind schedule, `delays()`). Once progress moves, each reading
    bounds the job's end from below, assuming its pace grows at most `drift` times for each
    doubling of its age over the pace it has shown, and that it may end early only once past
    `100 - early_end` percent and within `early_end` percent of its run in time, and that a
    job slowing down steadily near its end keeps slowing; the policy waits until that
    earliest end, then polls every `lateness` of the job's age (at most every 45 s), so a
    job that keeps to the model is seen that late at most (see `Pace`). A steady job of two
    hours costs about 33 polls instead of about 270, and is seen done within 45 s. Each
    delay is shortened by up to 20% at random, so waiters started together drift apart.
    `progress_aware=False` keeps the blind schedule throughout.

    On made-up jobs of ten families of progress curves, 10 s to 4 h
    (benchmarks/bench_schedule.py, held-out seeds): 4.0x to 5.2x fewer polls than plain
    doubling backoff with a lower p95 lateness on steady, accelerating, changing-rate,
    queued, paused and abruptly ending jobs; 3.0x to 3.4x on jobs whose progress slows
    towards the end or moves in steps of 10% or more, where the end may come at any moment
    over a long stretch, or progress reads 0 for a long start.

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
            client has had any answer, an outage is ridden out as usual. A resumed wait
            counts it from its first poll in the new process.
        stall_timeout: when set, raise `JobStalled` once neither status nor progress has changed
            for this many seconds (checked at each poll). Off by default: a job may sit queued
            for hours and still be fine.
        progress_aware: aim polls at the end predicted from the progress the job reports
            (True, the default); False polls on the blind schedule whatever the job says.
        max_estimated_interval: the longest wait a prediction may ask for, in seconds (1800,
            at least `max_interval`). No wait is longer than the time the job's current
            status has been watched either, so a job that outruns the model is seen late by
            at most its own age, and at most this. Lower it to bound the lateness of jobs that
            may end abruptly long before their progress says.
        drift: how many times faster a job may move each time its age doubles, over the pace
            its readings have shown (2; at least 1): a job whose pace grows with its age is
            within the model, and near its end, where its age hardly grows, it cannot speed up
            much. Larger is safer for jobs that speed up, and costs more polls. A queued job
            (SCHEDULED, WAITING, ...) is polled every `1 / drift` of its age.
        lateness: once the end may come at any moment, how late a job may be seen, as a
            share of its age (0.3; from `initial` up to 1.5 x `max_interval`, 45 s). Also how
            often a job that reports no progress is polled once the blind schedule is slower.
        early_end: how many percent short of 100 a job may end (8), in progress and in time:
            the end may come once a reading is `100 - early_end` percent or more (in the steps
            progress moves in) and the job has run `100 - early_end` percent of the time it
            needs to reach 100 at its present pace. 0 trusts progress to reach 100.
        clock: the monotonic clock the deadline, the grace and the stall guard are measured on.
        sleep: how to wait between polls; `asyncio.sleep` by default. With `clock`, what lets
            tests run a schedule in virtual time (see `jobpoll.testing.VirtualClock`).
        rng: a source of uniform numbers in [0, 1) for the jitter, e.g.
            `random.Random(7).random` for a schedule that repeats exactly.
        wall_clock: the UTC wall clock, in seconds since the epoch (`time.time`): a
            checkpoint turns the times of `clock`, which mean nothing in another process,
            into UTC with it, and a resumed wait turns them back. Only checkpoints read it.

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
        default=1800.0, validator=_check_max_estimated_interval
    )
    drift: float = attrs.field(default=2.0, validator=_check_factor)
    lateness: float = attrs.field(default=0.3, validator=_check_share)
    early_end: int = attrs.field(default=8, validator=_check_early_end)
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
    wall_clock: Callable[[], float] = attrs.field(
        default=time.time, validator=_check_callable, repr=False, eq=False
    )
    #: The blind delays before jitter (see `delays()`), derived from the options above.
    _table: tuple[float, ...] = attrs.field(
        init=False, repr=False, eq=False, default=attrs.Factory(_blind_table, takes_self=True)
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

    def _jittered(self, delay: float) -> float:
        jitter = self.jitter
        return delay * (1.0 - jitter * self.rng()) if jitter else delay

    def retry_delay(self, scheduled: float, retry_after: float | None) -> float:
        """The delay before polling again after a failure: the scheduled one, or longer when
        the server's `Retry-After` asks for it (cut to `max_retry_after`)."""
        if retry_after is None:
            return scheduled
        return max(scheduled, min(retry_after, self.max_retry_after))


#: Statuses of a job that has not started: it cannot finish before it runs.
_QUEUED = frozenset({"CREATED", "PERSISTED", "SCHEDULED", "WAITING"})
#: While the end may come at any moment, the tolerance (`lateness` of the job's age) is
#: capped at this many times `max_interval`: half as long again as a blind wait (45 s by
#: default), as for a job that reports nothing; its p95 lateness stays below plain backoff's.
_STILL = 1.5
#: How many moves in a row must be slower than the move before them for a job to count as
#: slowing down: fewer could be the chance of when the polls fell within each move.
_FALLS = 3


def longest_delay(policy: PollPolicy) -> float:
    """The longest a wait of `policy` can wait between two polls: a pace's longest wait (an
    estimate's, or the tolerance), or a server's longest `Retry-After` obeyed."""
    return max(policy.max_estimated_interval, _STILL * policy.max_interval, policy.max_retry_after)


class Pace:
    """One wait's place in its policy's schedule: the delay before each next poll.

    The model: a job that reports progress moves, from now on, no faster than the fastest
    pace its readings allow (after its first move, its pace since its status was first
    seen), times `drift` for each doubling of the time its status has been watched (its
    age); each reading is rounded down to the steps progress moves in, and a value was
    reached after the poll before the one that first saw it. It ends at 100%,
    or early: once it reads `100 - early_end` percent (in whole steps), and no sooner than
    `100 - early_end` percent of the time it would need to reach 100 at its present pace
    (its last move's); but past `100 - early_end` percent, a job whose last three moves or
    more were slower than the move before them (none over `drift` times slower than the one
    before it: that is a pause) and whose last is `drift` times slower keeps slowing: it
    ends at 100, no sooner than the faster of its last two moves takes it there. So every
    reading bounds the end from below. The pace waits for that earliest end, but never less
    than the tolerance (`lateness` of the time since the first poll, from `initial` to 1.5 x
    `max_interval`) and never more than the time it has watched the job's current status,
    nor `max_estimated_interval`; from the earliest end on, it polls every tolerance.

    In detail:

    - **Blind** until progress moves in the current status (and after every failed poll):
      the delays of `PollPolicy.delays()`, from one table per policy that every pace
      indexes; a running job silent for long is polled every tolerance once that is the
      longer. A queued job (CREATED, PERSISTED, SCHEDULED, WAITING) cannot finish before it
      runs: it is polled every `1 / drift` of its age (up to `max_estimated_interval`) once
      that is the longer. A new status, or progress going back, starts the blind schedule
      again from `initial`.
    - **Estimated** once progress moved: the fastest pace is, after one move, the pace since
      the status was first seen (up to a step further than read); after more, the faster
      of the paces from the first value progress moved to and over about the last half of
      the moves, to the last reading (each value reached by the poll that first saw it, and
      the last one after the poll before). With its pace growing with age, a job is
      waited for in ever larger shares of the time it has left, and near its end, where its
      age hardly grows, in nearly all of it. The bounds hold at every poll, so a job that
      pauses is polled about as sparsely as it is far from its end, and a job whose pace
      grows no faster than its age allows is seen within a tolerance of its end.
    - **Slowing** near its end: a job that creeps through its last percents would otherwise
      be polled every tolerance from `100 - early_end` percent on, since a reading may be a
      step from 100 and its fastest pace allows that step at any moment. Three moves in a
      row slower than the move before them, the last `drift` times slower, are evidence
      that it keeps slowing (one or two could be the chance of when the polls fell). A move
      over `drift` times slower than the one before is taken for a pause instead, and
      breaks the run; a shorter pause within the last move is covered by waiting only as
      long as the move before it allows.
    - A job that outruns the model (its pace jumps, it ends while reporting less than
      `100 - early_end` percent, or it speeds up again after slowing down near its end) is
      seen late by at most the wait in progress: at most the time its status has been
      watched, and `max_estimated_interval`.

    A pace is a handful of plain numbers (int, float, str or None) and its policy, so a wait
    can be saved and resumed exactly; the schedule depends only on the policy (its `rng`
    included) and the times and readings passed in.
    """

    __slots__ = (
        "_base_p",
        "_before_t",
        "_earlier",
        "_falls",
        "_fell_from",
        "_first_p",
        "_first_t",
        "_index",
        "_last_p",
        "_last_t",
        "_mid_p",
        "_mid_t",
        "_phase",
        "_policy",
        "_prev_p",
        "_prev_t",
        "_seen_t",
        "_start",
        "_status",
        "_step",
        "_win_p",
        "_win_t",
    )

    def __init__(self, policy: PollPolicy) -> None:
        self._policy = policy
        self._index = 0  # the next blind delay: an index into the policy's table
        self._status: str | None = None  # None until the first answer
        self._start = 0.0  # when the first answer came: the job's age counts from it
        self._phase = 0.0  # when the current status was first seen
        self._base_p = 0  # the phase's first value
        # The rate window, over readings taken when their value was first seen: from `win`
        # to the latest; `mid` splits it and becomes its start once the newer half is as long
        # as the older, so the window spans about the last half of the moves.
        self._win_t, self._win_p = 0.0, 0
        self._mid_t, self._mid_p = 0.0, -1  # -1: progress has not moved in this status
        self._last_t, self._last_p = 0.0, -1  # the last reading
        self._seen_t = 0.0  # when the last reading's value was first seen
        self._before_t = 0.0  # the reading before that: progress was still below it then
        # The value before the last one, when it was first seen: the present pace is the
        # last move's, from it to the last reading.
        self._prev_t, self._prev_p = 0.0, 0
        self._first_t, self._first_p = 0.0, 0  # the first value progress moved to, when seen
        # How many moves in a row were slower than the move before them (each by at most
        # `drift` times than the one before), and that move's pace; the pace of the move
        # before the last.
        self._falls, self._fell_from = 0, 0.0
        self._earlier = 0.0
        self._step = 0  # the steps progress moves in: the gcd of the readings

    def answered(self, now: float, job: Job) -> float:
        """The delay after a poll at `now` that saw `job` (not a terminal one)."""
        if not self._policy.progress_aware:
            return self._blind()
        progress = job.progress
        if job.raw_status != self._status or progress < self._last_p:
            # The first answer, or a new phase: what was learnt of the pace no longer holds,
            # and the phase may be short, so the blind schedule starts again from `initial`.
            if self._status is None:
                self._start = now  # the blind schedule goes on from the failures before
            else:
                self._index = 0
            self._status = job.raw_status
            self._phase = now
            self._base_p = progress
            self._mid_p = -1
            self._falls = 0
            self._last_t, self._last_p, self._seen_t = now, progress, now
            return self._unmoved(now)
        if progress > self._last_p:
            self._step = math.gcd(self._step, progress)
            if self._mid_p < 0:  # the first move: the window starts here
                self._win_t, self._win_p = now, progress
                self._mid_t, self._mid_p = now, progress
                self._prev_t, self._prev_p = now, progress
                self._first_t, self._first_p = now, progress
            else:
                if now - self._mid_t >= self._mid_t - self._win_t:
                    self._win_t, self._win_p = self._mid_t, self._mid_p
                    self._mid_t, self._mid_p = now, progress
                self._slowed(now, progress)
                self._prev_t, self._prev_p = self._seen_t, self._last_p
            self._before_t, self._seen_t = self._last_t, now
        self._last_t, self._last_p = now, progress
        if self._mid_p < 0:
            return self._unmoved(now)
        return self._estimated(now)

    def _slowed(self, now: float, progress: int) -> None:
        # Counts the moves in a row that were slower than the move before them, each by at
        # most `drift` times than the one before: a longer gap is taken for a pause, not a
        # slowing. The first move (from the phase's first value) has no pace to compare.
        move = (progress - self._last_p) / max(now - self._seen_t, 1e-9)
        before = 0.0
        if self._seen_t > self._prev_t:
            before = (self._last_p - self._prev_p) / (self._seen_t - self._prev_t)
        self._earlier = before
        if before / self._policy.drift <= move <= (self._fell_from if self._falls else before):
            if not self._falls:
                self._fell_from = before
            self._falls += 1
        else:
            self._falls = 0

    def failed(self, now: float) -> float:
        """The delay after a poll at `now` that failed (before any `Retry-After`)."""
        return self._blind()

    def time_left(self, now: float) -> float | None:
        """Seconds from `now` until the job reaches 100% at the pace the schedule measured:
        over its rate window (about the last half of the moves), or since the status was
        first seen while progress has moved once; None until progress moves in the current
        status. For display (a progress bar's time left): the schedule itself waits only
        until the earliest end that pace allows if it grows, which comes sooner.
        """
        if self._mid_p < 0:
            return None
        if self._seen_t > self._win_t:
            pace = (self._last_p - self._win_p) / (self._seen_t - self._win_t)
        else:
            pace = (self._last_p - self._base_p) / max(self._seen_t - self._phase, 1e-9)
        if pace <= 0:
            return None
        return max(0.0, (100 - self._last_p) / pace - (now - self._seen_t))

    def _blind(self) -> float:
        policy = self._policy
        table = policy._table
        delay = table[min(self._index, len(table) - 1)]
        self._index += 1
        return policy._jittered(delay)

    def _tolerance(self, now: float) -> float:
        policy = self._policy
        return min(
            max(policy.initial, policy.lateness * (now - self._start)),
            _STILL * policy.max_interval,
        )

    def _unmoved(self, now: float) -> float:
        policy = self._policy
        if self._status in _QUEUED:
            still = min((now - self._start) / policy.drift, policy.max_estimated_interval)
        else:
            still = self._tolerance(now)
        blind = self._blind()
        return max(blind, policy._jittered(still))

    def _fastest(self, now: float) -> float:
        # The fastest pace of the model, in percent per second. With one move only: since
        # the status was first seen, progress being up to a step past the reading now (the
        # time a job took to show its first move is the best evidence of its pace; one that
        # then races ahead is seen late by at most its age). Then: from the first value
        # progress moved to, and over about the last half of the moves, to the last
        # reading; each value was reached at or before the poll that first saw it, and the
        # last one after the poll before that.
        progress = self._last_p
        if self._seen_t <= self._first_t:
            return (progress + self._step - self._base_p) / max(now - self._phase, 1e-9)
        fastest = 0.0
        for since_t, since_p in ((self._first_t, self._first_p), (self._win_t, self._win_p)):
            until = self._before_t if self._before_t > since_t else self._seen_t
            if until > since_t:
                fastest = max(fastest, (progress - since_p) / (until - since_t))
        return fastest

    def _reaches(self, now: float, target: int, pace: float) -> float:
        # The earliest time progress can reach `target` from the last reading, at `pace`
        # (percent per second) growing `drift` times for each doubling of the time the
        # status has been watched: the pace at age a is at most pace * (a / age) ** log2(drift)
        # from now on, so reaching it takes the age to age * (1 + (k+1) left / (pace age))
        # ** (1 / (k+1)). Progress may be up to a step past the reading now, and no further
        # than `pace` has taken it since the poll before the reading's value was first seen.
        progress = self._last_p
        left = target - progress - min(self._step, pace * (now - self._before_t))
        if left <= 0:
            return now
        age = max(now - self._phase, 1e-9)
        power = math.log2(self._policy.drift) + 1
        return self._phase + age * math.pow(1 + power * left / (pace * age), 1 / power)

    def _estimated(self, now: float) -> float:
        policy = self._policy
        progress, step = self._last_p, self._step
        fastest = self._fastest(now)
        # An early end needs a reading of 100 - early_end percent, in whole steps...
        early = min(100, -(-(100 - policy.early_end) // step) * step)
        end = self._reaches(now, early, fastest)
        if self._seen_t > self._prev_t:
            # ... and no sooner than 100 - early_end percent of the time the job would need
            # to reach 100 at its present pace (the last move's): a job ends early by a share
            # of its run in time too, not only in percent. A job that creeps through its
            # last percent is not about to end.
            present = (progress - self._prev_p) / (self._seen_t - self._prev_t)
            timely = self._phase + (self._reaches(now, 100, present) - self._phase) * (
                1 - policy.early_end / 100
            )
            soonest = self._reaches(now, 100, fastest)
            if (
                progress >= early
                and self._falls >= _FALLS
                and self._fell_from >= policy.drift * present
            ):
                # A job slowing down near its end keeps slowing: it ends at 100, no sooner
                # than the faster of its last two moves takes it there (the last one may
                # have spanned a short pause).
                soonest = timely = self._reaches(now, 100, max(present, self._earlier))
            end = min(soonest, max(end, timely))
        tolerance = self._tolerance(now)
        wait = min(end - now, now - self._phase, policy.max_estimated_interval)
        return policy._jittered(max(tolerance, wait))

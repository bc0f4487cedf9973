"""The schedule's rules, stated in `PollPolicy`'s docstring: functions of a policy, a pace's
state and the time that update the state and return the delay before the next poll."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import attrs

from jobpoll._state import PaceState

if TYPE_CHECKING:
    from jobpoll._models import Job
    from jobpoll._policy import PollPolicy


#: Statuses of a job that has not started: it cannot finish before it runs.
QUEUED = frozenset({"CREATED", "PERSISTED", "SCHEDULED", "WAITING"})
#: While the end may come at any moment, a job is polled every this share of its age (up to
#: `max_lateness`): a job of seconds is seen within seconds, not `max_lateness` late.
_SHARE_OF_AGE = 0.3
#: How many moves in a row must be slower than the move before them for a job to count as
#: slowing down: fewer could be the chance of when the polls fell within each move.
_FALLS = 3


def longest_delay(policy: PollPolicy) -> float:
    """The longest a wait of `policy` can wait between two polls (a `Retry-After` included)."""
    return max(policy.max_estimated_interval, policy.max_interval, policy.max_retry_after)


@attrs.define(eq=False)
class Pace:
    """One wait's place in its policy's schedule (`PollPolicy.pace()`), bound to its `state`."""

    policy: PollPolicy
    state: PaceState = attrs.Factory(PaceState)

    def answered(self, now: float, job: Job) -> float:
        return answered(self.policy, self.state, now, job)

    def failed(self, now: float) -> float:
        return failed(self.policy, self.state)

    def time_left(self, now: float) -> float | None:
        return time_left(self.state, now)


def answered(policy: PollPolicy, s: PaceState, now: float, job: Job) -> float:
    """The delay after a poll at `now` that saw `job` (not a terminal one)."""
    if not policy.progress_aware:
        return failed(policy, s)
    progress = job.progress
    if job.raw_status != s.status or progress < s.last_progress:
        # The first answer, or a new phase: what was learnt of the pace no longer holds,
        # and the phase may be short, so the blind schedule starts again from `initial`.
        if s.status is None:
            s.started_at = now  # the blind schedule goes on from the failures before
        else:
            s.blind_index = 0
        s.status = job.raw_status
        s.phase_started_at = now
        s.phase_progress = progress
        s.middle_progress = -1
        s.slower_moves = 0
        s.jumps = 0
        s.last_at, s.last_progress, s.value_seen_at = now, progress, now
        return _unmoved(policy, s, now)
    moved = progress > s.last_progress
    if moved:
        s.step = math.gcd(s.step, progress)
        if s.middle_progress < 0:  # the first move: the window starts here
            s.window_at, s.window_progress = now, progress
            s.middle_at, s.middle_progress = now, progress
            s.previous_at, s.previous_progress = now, progress
            s.first_move_at, s.first_move_progress = now, progress
        else:
            if now - s.middle_at >= s.middle_at - s.window_at:
                s.window_at, s.window_progress = s.middle_at, s.middle_progress
                s.middle_at, s.middle_progress = now, progress
            _slowed(policy, s, now, progress)
            s.previous_at, s.previous_progress = s.value_seen_at, s.last_progress
        s.poll_before_at, s.value_seen_at = s.last_at, now
    s.last_at, s.last_progress = now, progress
    if moved and _jumped(s):
        s.jumps = min(s.jumps + 1, 100)  # one says the job may jump to its end
    if s.middle_progress < 0:
        return _unmoved(policy, s, now)
    return _estimated(policy, s, now)


def failed(policy: PollPolicy, s: PaceState) -> float:
    """The delay after a failed poll (before any `Retry-After`): the next blind delay."""
    return policy.jittered(_blind(policy, s))


def _blind(policy: PollPolicy, s: PaceState) -> float:
    table = policy.blind_delays
    delay = table[min(s.blind_index, len(table) - 1)]
    s.blind_index += 1
    return delay


def time_left(s: PaceState, now: float) -> float | None:
    """Seconds from `now` until the job reaches 100% at the pace the schedule measured
    (None until progress moves in the current status): for display, as the schedule itself
    aims at the earliest end, which comes sooner."""
    if s.middle_progress < 0:
        return None
    if s.value_seen_at > s.window_at:
        pace = (s.last_progress - s.window_progress) / (s.value_seen_at - s.window_at)
    else:
        pace = (s.last_progress - s.phase_progress) / max(
            s.value_seen_at - s.phase_started_at, 1e-9
        )
    if pace <= 0:
        return None
    return max(0.0, (100 - s.last_progress) / pace - (now - s.value_seen_at))


def _slowed(policy: PollPolicy, s: PaceState, now: float, progress: int) -> None:
    # Counts the moves in a row that were slower than the move before them, each by at
    # most `drift` times than the one before: a longer gap is taken for a pause, not a
    # slowing. The first move (from the phase's first value) has no pace to compare.
    move = (progress - s.last_progress) / max(now - s.value_seen_at, 1e-9)
    before = 0.0
    if s.value_seen_at > s.previous_at:
        before = (s.last_progress - s.previous_progress) / (s.value_seen_at - s.previous_at)
    s.move_before_pace = before
    if before / policy.drift <= move <= (s.slowing_from if s.slower_moves else before):
        if not s.slower_moves:
            s.slowing_from = before
        s.slower_moves += 1
    else:
        s.slower_moves = 0


def _tolerance(policy: PollPolicy, s: PaceState, now: float) -> float:
    share = _SHARE_OF_AGE if policy.lateness is None else policy.lateness
    return min(max(policy.initial, share * (now - s.started_at)), policy.max_lateness)


def _unmoved(policy: PollPolicy, s: PaceState, now: float) -> float:
    blind = _blind(policy, s)
    if s.status in QUEUED:
        still = (now - s.started_at) / policy.drift
        return policy.jittered(min(max(blind, still), policy.max_estimated_interval))
    return policy.jittered(min(max(blind, _tolerance(policy, s, now)), policy.max_lateness))


def _fastest(s: PaceState, now: float) -> float:
    # The fastest pace of the model, in percent per second. With one move only: since the
    # status was first seen, up to a step past the reading (the time to the first move is the
    # best evidence of a pace). Then: from the first move, and over the rate window, to the
    # last reading, each value reached at or before the poll that first saw it, and after
    # the poll before that.
    progress = s.last_progress
    if s.value_seen_at <= s.first_move_at:
        return (progress + s.step - s.phase_progress) / max(now - s.phase_started_at, 1e-9)
    fastest = 0.0
    for since_t, since_p in (
        (s.first_move_at, s.first_move_progress),
        (s.window_at, s.window_progress),
    ):
        until = s.poll_before_at if s.poll_before_at > since_t else s.value_seen_at
        if until > since_t:
            fastest = max(fastest, (progress - since_p) / (until - since_t))
    return fastest


def _reaches(policy: PollPolicy, s: PaceState, now: float, target: int, pace: float) -> float:
    # `PollPolicy`'s formula: the earliest progress can reach `target` at `pace`, from up to a
    # step past the last reading (no further than `pace` went since the poll before it).
    left = target - s.last_progress - min(s.step, pace * (now - s.poll_before_at))
    if left <= 0:
        return now
    age = max(now - s.phase_started_at, 1e-9)
    power = math.log2(policy.drift) + 1
    return s.phase_started_at + age * math.pow(1 + power * left / (pace * age), 1 / power)


def _jumped(s: PaceState) -> bool:
    # Whether the move just read was a jump: after reading one value for `flat` seconds, a
    # job that moves smoothly made less than a step in them, so in the `gap` to the next
    # reading it makes at most a step per `flat`, the step in progress, and a step of
    # rounding. A job that has jumped may jump to its end at any moment.
    if s.value_seen_at <= s.first_move_at:
        before_at, before = s.phase_started_at, s.phase_progress
    else:
        before_at, before = s.previous_at, s.previous_progress
    flat, gap = s.poll_before_at - before_at, s.value_seen_at - s.poll_before_at
    return flat > 0 and s.last_progress - before > s.step * (2 + gap / flat)


def _estimated(policy: PollPolicy, s: PaceState, now: float) -> float:
    tolerance = _tolerance(policy, s, now)
    if s.jumps:
        return policy.jittered(tolerance)
    end = _earliest_end(policy, s, now)
    reach = max(now - s.phase_started_at, policy.max_lateness)
    wait = min(end - now, reach, policy.max_estimated_interval)
    return policy.jittered(max(tolerance, wait))


def _earliest_end(policy: PollPolicy, s: PaceState, now: float) -> float:
    progress, step = s.last_progress, s.step
    fastest = _fastest(s, now)
    # An early end needs a reading of 100 - early_end percent, in whole steps...
    early = min(100, -(-(100 - policy.early_end) // step) * step)
    if s.value_seen_at <= s.previous_at:
        return _reaches(policy, s, now, early, fastest)
    # ... at the fastest pace seen, the last move's included (the job's latest news), ...
    present = (progress - s.previous_progress) / (s.value_seen_at - s.previous_at)
    fastest = max(fastest, present)
    end = _reaches(policy, s, now, early, fastest)
    # ... and no sooner than 100 - early_end percent of the time the job would need to
    # reach 100 at its present pace: a job ends early by a share of its run in time too,
    # not only in percent. A job that creeps through its last percent is not about to end.
    timely = s.phase_started_at + (_reaches(policy, s, now, 100, present) - s.phase_started_at) * (
        1 - policy.early_end / 100
    )
    soonest = _reaches(policy, s, now, 100, fastest)
    if progress >= early and s.slower_moves >= _FALLS and s.slowing_from >= policy.drift * present:
        # A job slowing down near its end keeps slowing: it ends at 100, no sooner than
        # the faster of its last two moves takes it there (the last one may have spanned
        # a short pause).
        soonest = timely = _reaches(policy, s, now, 100, max(present, s.move_before_pace))
    return min(soonest, max(end, timely))

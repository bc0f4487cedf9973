"""The progress-aware `Pace`: the bounds its model promises, its guards, and its state.

Everything runs in virtual time: a job is a function of the time since the first poll, and
the pace is asked for each delay as `wait_for_job` would ask it, with a seeded `rng`.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import attrs
import pytest

from jobpoll import Job, JobsClient, JobStatus, PollPolicy, wait_for_job
from jobpoll._pace import Pace
from jobpoll._state import PaceState
from jobpoll.testing import FakeJobsService, VirtualClock

Curve = Callable[[float], float]
CREATED = datetime(2026, 1, 1, tzinfo=UTC)
#: A blind schedule of many distinct steps before its cap: 1 s growing by half to 30 s.
#: Without jitter:
BLIND = [1, 1.5, 2.25, 3.375, 5.0625, 7.59375, 11.390625, 17.0859375, 25.62890625, 30, 30]


def job(progress: int = 0, status: JobStatus | str = JobStatus.RUNNING) -> Job:
    raw = str(status)
    return Job(
        id="j", created_at=CREATED, progress=progress, status=JobStatus.parse(raw), raw_status=raw
    )


def run(
    policy: PollPolicy, duration: float, curve: Curve | None, pace: Pace | None = None
) -> tuple[int, float, list[float]]:
    """Wait on a made-up job of `duration` s: the polls sent, how late its end was seen,
    and the delays asked for."""
    pace = pace or policy.pace()
    now, delays = 0.0, []
    while now < duration:
        progress = 0 if curve is None else max(0, min(100, int(curve(now / duration))))
        delays.append(pace.answered(now, job(progress)))
        now += delays[-1]
    return len(delays) + 1, now - duration, delays


def seeded(seed: int, **options: object) -> PollPolicy:
    return PollPolicy(rng=random.Random(seed).random, **options)  # type: ignore[arg-type]


def tolerance(policy: PollPolicy, age: float) -> float:
    """The lateness the model accepts once the end may come: 0.3 of the job's age, from
    `initial` to `max_lateness`."""
    return min(max(policy.initial, 0.3 * age), policy.max_lateness)


#: Curves within the model: the pace never grows more than `drift` (2) times for each doubling
#: of the job's age over the pace its readings have shown, and the end comes at 100% or once
#: past 92%: the model's promise holds.
KEEPS_ITS_PACE = [
    pytest.param(lambda x: 100 * x, id="steady"),
    pytest.param(lambda x: 100 * x * x, id="accelerating"),
    pytest.param(lambda x: 100 * (1 - (1 - x) ** 2), id="decelerating"),
    pytest.param(lambda x: 100 * (1 - (1 - x) ** 3), id="decelerating-more"),
    pytest.param(lambda x: 100 * min(x / 0.8, 0.5 + max(0.0, x - 0.6) / 0.8), id="paused"),
    pytest.param(lambda x: 10 * math.floor(10 * x), id="steps-of-10"),
    pytest.param(lambda x: 96 * x, id="ends-at-96"),
]


@pytest.mark.parametrize("curve", KEEPS_ITS_PACE)
@pytest.mark.parametrize("duration", [10, 95, 1000, 14400])
@pytest.mark.parametrize("seed", range(4))
def test_a_job_that_keeps_its_pace_is_seen_within_a_tolerance(
    curve: Curve, duration: float, seed: int
) -> None:
    """A job within the model (its pace grows no more than `drift` per doubling of its age,
    it ends at 100% or once past 92%) is seen done at most one tolerance late (0.3 of
    its duration, at most 45 s): no wait crosses the earliest end its readings allow, and
    from there the polls come every tolerance."""
    policy = seeded(seed)
    _, latency, _ = run(policy, duration, curve)
    assert 0 <= latency <= tolerance(policy, duration)


@pytest.mark.parametrize("seed", range(4))
def test_a_long_steady_job_costs_few_polls(seed: int) -> None:
    """A two-hour steady job costs at most 80 polls, under a third of the blind schedule's
    (about 270) and half a fixed interval's with the same promise (a poll every 45 s: 161):
    while the end is far, the waits stretch to 3 x `max_lateness`, and no further."""
    polls, _, delays = run(seeded(seed), 7200, lambda x: 100 * x)
    blind, _, _ = run(seeded(seed, progress_aware=False), 7200, lambda x: 100 * x)
    assert polls <= 80
    assert blind > 3 * polls
    assert 120 < max(delays) <= 135


@pytest.mark.parametrize("duration", [100, 300, 3000, 14400])
@pytest.mark.parametrize("seed", range(3))
def test_a_job_that_speeds_up_within_drift_is_seen_within_a_tolerance(
    duration: float, seed: int
) -> None:
    """A pace that grows `drift` (2) times as the job's age doubles is within the model: a
    job that runs at one pace to half its time, then ever faster in proportion to its age
    (twice as fast at its end), is seen at most one tolerance late."""
    policy = seeded(seed)
    curve = lambda x: 80 * x if x < 0.5 else 40 + 80 * (x * x - 0.25)  # noqa: E731
    _, latency, _ = run(policy, duration, curve)
    assert 0 <= latency <= tolerance(policy, duration)


def test_near_its_end_a_job_is_waited_for_in_nearly_all_the_time_it_has_left() -> None:
    """At 80% after 8000 s of 1% per 100 s, an early end needs 10% more: 1000 s at that
    pace. Its age grows by an eighth at most meanwhile, so its pace may hardly grow: the
    wait covers over 80% of those 1000 s (half of them if the pace could double at once),
    when `max_lateness` lets it (3 x 600 s)."""
    pace = PollPolicy(jitter=0, max_lateness=600).pace()
    pace.answered(0, job(0))
    pace.answered(100, job(1))
    pace.answered(7900, job(79))
    assert 0.8 * 1000 < pace.answered(8000, job(80)) < 1000


def test_a_job_creeping_through_its_last_percents_is_not_polled_every_tolerance() -> None:
    """An early end comes no sooner than 92% of the time the job needs to reach 100% at its
    present pace: at 96% after 600 s for the last percent, at the age of 10,000 s, the end
    is minutes away (the wait is the longest `max_lateness` allows, 3 x 70 s); after 20 s
    for it, the end may come at any moment."""
    policy = PollPolicy(jitter=0, max_lateness=70)
    for last_move, wait in ((600, 2.9 * tolerance(policy, 10000)), (20, 0)):
        pace = policy.pace()
        pace.answered(0, job(0))
        pace.answered(100, job(10))
        pace.answered(10000 - last_move, job(95))
        delay = pace.answered(10000, job(96))
        assert delay > wait if wait else delay == tolerance(policy, 10000)


#: First-seen readings of a job slowing down near its end: 0.01, 0.007, 0.005 and 0.0035%
#: per second over its last four moves, each under 2 (`drift`) times slower than the one
#: before, the last 2.9 times slower than the first.
SLOWING = [(0, 0), (100, 10), (6000, 90), (6400, 94), (6686, 96), (6886, 97)]


def test_a_job_slowing_down_near_its_end_is_waited_for_at_its_last_paces() -> None:
    """Past 92%, three moves in a row slower than the move before them (each by at most
    `drift` times than the one before, the last by `drift` times) say the job keeps slowing:
    at 98% after 286 s for the last percent and 200 s for the one before, 100% is at least a
    percent away at the faster of the two, so the wait is most of 200 s instead of a
    tolerance (`max_lateness`, 70 s), as it is when nothing says the job slows down."""
    policy = PollPolicy(jitter=0, max_lateness=70)
    pace = policy.pace()
    for now, progress in SLOWING:
        pace.answered(now, job(progress))
    assert 150 < pace.answered(7172, job(98)) <= 200

    steady = policy.pace()
    for now, progress in [(0, 0), (100, 10), (6000, 90), (6300, 95), (6600, 97)]:
        steady.answered(now, job(progress))
    assert steady.answered(6750, job(98)) == tolerance(policy, 6750)


def test_a_pause_is_not_taken_for_a_slowing() -> None:
    """A move more than `drift` times slower than the one before is a pause, after which
    the job may move at its fastest pace again: at 98% after 1114 s for the last percent,
    the wait is no longer than the last percent takes at the fastest pace its readings
    allow (88% in 6786 s: 77 s)."""
    pace = PollPolicy(jitter=0, max_lateness=70).pace()
    for now, progress in SLOWING:
        pace.answered(now, job(progress))
    assert pace.answered(8000, job(98)) < 77


def test_the_time_to_a_first_move_bounds_the_pace() -> None:
    """A job that reads 0 for 1000 s, then 25%, is taken to move at no more than 50% (up to
    a step further than read) per 1040 s: the wait is most of its age, where a job that
    might have made its 25% in the last 40 s alone would be polled every tolerance. If it
    does race ahead, it is seen late by at most the time it has been watched (1040 s), and
    by 3 x `max_lateness` (600 s here)."""
    pace = PollPolicy(jitter=0, max_lateness=600).pace()
    pace.answered(0, job(0))
    pace.answered(1000, job(0))
    assert 900 < pace.answered(1040, job(25)) <= 1040


def test_coarse_steps_wait_for_the_next_step() -> None:
    """Progress in steps of 20%: after 80% the end needs a reading of 92%, that is the next
    step, so the wait covers most of a step (2000 s here) instead of polling every
    tolerance from half a step on (when `max_lateness`, 600 s here, lets it)."""
    pace = PollPolicy(jitter=0, max_lateness=600).pace()
    for now, progress in [(0, 0), (1000, 0), (1040, 20), (3000, 20), (3040, 40)]:
        pace.answered(now, job(progress))
    for now, progress in [(5000, 40), (5040, 60), (7000, 60)]:
        pace.answered(now, job(progress))
    assert pace.answered(7040, job(80)) > 1500


def test_a_wrong_estimate_costs_at_most_the_time_watched() -> None:
    """A job that reads 1% after 100 s and then ends at once is seen at most 100 s late:
    the wait is bounded by the time its status has been watched, not by the 4950 s the
    model would allow."""
    pace = PollPolicy(jitter=0).pace()
    pace.answered(0, job(0))
    assert pace.answered(100, job(1)) == 100


def test_a_wrong_estimate_costs_at_most_three_times_max_lateness() -> None:
    """However old the job, no wait exceeds 3 x `max_lateness`."""
    pace = PollPolicy(jitter=0, max_lateness=40).pace()
    pace.answered(0, job(0))
    pace.answered(1000, job(1))
    assert pace.answered(5000, job(2)) == 120


@pytest.mark.parametrize("max_lateness", [20, 200])
def test_three_times_max_lateness_bounds_every_wait(max_lateness: float) -> None:
    """No wait exceeds 3 x `max_lateness`, nor the time the status has been watched
    (unless that is below `max_lateness`)."""
    policy = PollPolicy(initial=1, factor=1.5, jitter=0, max_lateness=max_lateness)
    pace = policy.pace()
    pace.answered(0, job(0))
    now = 1.0
    for progress in range(1, 60):
        delay = pace.answered(now, job(progress))
        assert delay <= min(3 * max_lateness, max(now, max_lateness))
        now += max(delay, 100)


def test_the_deprecated_max_estimated_interval_can_only_shorten_the_waits() -> None:
    """`max_estimated_interval=` still bounds the model's waits, with a `DeprecationWarning`,
    but cannot lift them past 3 x `max_lateness`: the promise holds whatever it says."""
    with pytest.deprecated_call(match="max_lateness"):
        short = PollPolicy(jitter=0, max_estimated_interval=100)
    with pytest.deprecated_call(match="max_estimated_interval"):
        long = PollPolicy(jitter=0, max_estimated_interval=1800)
    for policy, longest in ((short, 100), (long, 135)):
        assert policy.max_estimated_interval == longest
        pace = policy.pace()
        pace.answered(0, job(0))
        pace.answered(1000, job(1))
        assert pace.answered(5000, job(2)) == longest


def test_the_deprecated_lateness_still_sets_the_share_of_the_age() -> None:
    """`lateness=` is still the share of its age a job is polled at near its end, with a
    `DeprecationWarning`, and still no longer than `max_lateness`."""
    with pytest.deprecated_call(match="lateness"):
        policy = PollPolicy(jitter=0, lateness=0.1)
    pace = policy.pace()
    pace.answered(0, job(0))
    pace.answered(10, job(10))
    assert pace.answered(99, job(99)) == pytest.approx(9.9)
    assert pace.answered(1000, job(99)) == 45


def test_floor_is_initial() -> None:
    """However near the end, no wait is shorter than `initial`."""
    _, _, delays = run(PollPolicy(jitter=0, initial=2, max_interval=30), 20, lambda x: 100 * x)
    assert min(delays) >= 2


def test_near_the_end_polls_come_every_tolerance() -> None:
    """Once the earliest end has come, polls come every tolerance: 0.3 of the job's age, up
    to `max_lateness` (45 s) for an old job."""
    policy = PollPolicy(jitter=0)
    pace = policy.pace()
    pace.answered(0, job(0))
    pace.answered(100, job(10))
    assert pace.answered(990, job(99)) == 45  # 0.3 of 990 s, capped at max_lateness
    pace = policy.pace()
    pace.answered(0, job(0))
    pace.answered(10, job(10))
    assert pace.answered(99, job(99)) == pytest.approx(29.7)


def test_blind_until_progress_moves() -> None:
    """While a running job reads 0 and is young, the pace follows the blind schedule."""
    pace = PollPolicy(initial=1, factor=1.5, jitter=0).pace()
    now, delays = 0.0, []
    for _ in range(7):
        delays.append(pace.answered(now, job(0)))
        now += delays[-1]
    assert delays == pytest.approx(BLIND[:7])


def test_silent_job_is_polled_every_tolerance_up_to_45_s() -> None:
    """A job that never reports progress is polled on the blind schedule, stretched to 0.3
    of its age once that is longer, and at most every `max_lateness` (45 s): seen at most
    45 s late."""
    polls, latency, delays = run(PollPolicy(initial=1, factor=1.5, jitter=0), 7200, None)
    assert delays[:7] == pytest.approx(BLIND[:7])
    assert max(delays) == 45
    assert latency <= 45
    assert polls < 200  # 275 on the blind schedule alone


@pytest.mark.parametrize("seed", range(5))
def test_silent_job_against_plain_backoff(seed: int) -> None:
    """With no progress reported, no more polls than plain expo (1 s doubling to 60 s,
    full jitter), and the end seen within 45 s."""
    plain = seeded(seed, initial=1, factor=2, max_interval=60, jitter=1, progress_aware=False)
    ours_polls, ours_latency, _ = run(seeded(seed), 3600, None)
    plain_polls, _, _ = run(plain, 3600, None)
    assert ours_polls <= plain_polls * 1.1
    assert ours_latency <= 45


def test_a_queued_job_is_polled_every_half_its_age() -> None:
    """A SCHEDULED job cannot finish before it runs: polled every 1/drift of its age (up to
    3 x `max_lateness`). Once RUNNING at 0%, it may end at any moment: polled every
    tolerance (0.3 of its age, up to 45 s) or on the blind schedule, whichever is longer."""
    policy = PollPolicy(jitter=0)
    pace = policy.pace()
    assert pace.answered(0, job(0, JobStatus.SCHEDULED)) == 2
    assert pace.answered(100, job(0, JobStatus.SCHEDULED)) == 50
    assert pace.answered(10000, job(0, JobStatus.WAITING)) == 135
    assert pace.answered(12000, job(0, JobStatus.RUNNING)) == 45
    young = policy.pace()
    young.answered(0, job(0, JobStatus.SCHEDULED))
    young.answered(2, job(0, JobStatus.SCHEDULED))
    assert young.answered(6, job(0, JobStatus.RUNNING)) == 2  # the blind schedule anew


def test_progress_going_backwards_starts_the_blind_schedule_again() -> None:
    """A drop in progress (a restarted stage) forgets the pace: back to `initial`."""
    pace = PollPolicy(initial=1, factor=1.5, jitter=0).pace()
    pace.answered(0, job(0))
    pace.answered(1, job(10))
    assert pace.answered(2, job(20)) > 1.5  # estimated: longer than the blind schedule's
    assert pace.answered(3, job(5)) == 1
    assert pace.answered(3.2, job(5)) == 1.5


def test_failures_follow_the_blind_schedule() -> None:
    """A failed poll steps the blind schedule, whatever the estimate (Retry-After aside)."""
    pace = PollPolicy(initial=1, factor=1.5, jitter=0).pace()
    pace.answered(0, job(0))
    pace.answered(10, job(10))
    assert pace.failed(20) == 1.5
    assert pace.failed(21) == 2.25


def test_same_rng_same_schedule() -> None:
    """The schedule depends only on the observations and the random source."""
    curve = lambda x: 100 * x  # noqa: E731
    assert run(seeded(7), 3600, curve) == run(seeded(7), 3600, curve)
    assert run(seeded(7), 3600, curve)[2] != run(seeded(8), 3600, curve)[2]


def test_jitter_only_shortens() -> None:
    """Each jittered delay lies within `jitter` below the unjittered one."""
    curve = lambda x: 100 * x  # noqa: E731
    _, _, exact = run(PollPolicy(jitter=0), 3600, curve)
    _, _, jittered = run(PollPolicy(jitter=0.2, rng=lambda: 0.5), 3600, curve)
    for delay, plain in zip(jittered, exact, strict=False):
        if delay != pytest.approx(0.9 * plain):
            break  # the schedules part once a shorter wait reads other progress
    else:
        pytest.fail("the jittered schedule never differed")
    assert all(0.8 * p <= d <= p for d, p in zip(jittered[:5], exact[:5], strict=True))


def test_not_progress_aware_is_the_blind_schedule() -> None:
    """`progress_aware=False` ignores progress: the delays are `delays()`."""
    stepped = PollPolicy(initial=1, factor=1.5, jitter=0)
    _, _, delays = run(attrs.evolve(stepped, progress_aware=False), 600, lambda x: 100 * x)
    assert delays == pytest.approx([*BLIND, *[30] * (len(delays) - len(BLIND))])
    assert list(itertools.islice(stepped.delays(), 11)) == pytest.approx(BLIND)


def test_the_blind_delays_come_from_one_table_per_policy() -> None:
    """`backoff.expo` fills one table per policy; a pace holds only its index in it."""
    policy = PollPolicy(initial=1, factor=1.5, jitter=0)
    assert policy.blind_delays == pytest.approx(BLIND[:-1])
    pace = policy.pace()
    for _ in range(3):
        pace.failed(0)
    assert pace.state.blind_index == 3


def test_a_pace_is_plain_numbers_and_its_policy() -> None:
    """A pace's state is a handful of plain numbers (and the status string), besides its
    policy: no generator, list or other reference, so a wait can be saved as data."""
    policy = seeded(1)
    pace = policy.pace()
    run(policy, 3600, lambda x: 100 * x, pace)
    assert pace.policy is policy
    assert not hasattr(pace.state, "__dict__")
    assert len(attrs.fields(PaceState)) <= 22
    for name, value in attrs.asdict(pace.state).items():
        assert value is None or type(value) in (int, float, str), (name, value)


@pytest.mark.parametrize("cut", [1, 5, 12])
def test_a_saved_pace_resumes_exactly(cut: int) -> None:
    """Copy a pace's numbers into a fresh one mid-wait: the rest of the schedule is the
    one the uninterrupted pace asks for."""
    curve = lambda x: int(100 * x * x)  # noqa: E731
    whole = seeded(3).pace()
    expected = [whole.answered(60.0 * i, job(curve(i / 40))) for i in range(40)]

    policy = seeded(3)
    first = policy.pace()
    delays = [first.answered(60.0 * i, job(curve(i / 40))) for i in range(cut)]
    resumed = Pace(policy, attrs.evolve(first.state))
    delays += [resumed.answered(60.0 * i, job(curve(i / 40))) for i in range(cut, 40)]
    assert delays == expected


async def test_wait_for_job_end_to_end_in_virtual_time(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """Through `wait_for_job` and real HTTP: an hour-long linear job is seen done within
    45 s of its end in under 45 polls; the blind schedule takes over 120."""
    policy = PollPolicy(clock=clock, sleep=clock.sleep, rng=random.Random(1).random)
    job_id = service.add_job(duration=3600)
    finished = await wait_for_job(client, job_id, policy=policy)
    assert finished.succeeded
    assert 3600 <= clock.now - clock.start <= 3645
    assert service.request_count(job_id) < 45

    blind = PollPolicy(
        clock=clock, sleep=clock.sleep, rng=random.Random(1).random, progress_aware=False
    )
    other = service.add_job(duration=3600)
    assert (await wait_for_job(client, other, policy=blind)).succeeded
    assert service.request_count(other) > 120


def test_failures_before_the_first_answer_keep_their_place_in_the_blind_schedule() -> None:
    """Failed polls before any answer (an outage at the start) step the blind schedule, and
    the first answer goes on from there rather than from `initial`."""
    pace = PollPolicy(initial=1, factor=1.5, jitter=0).pace()
    assert [pace.failed(t) for t in (0, 1, 2.5)] == BLIND[:3]
    assert pace.answered(4.75, job(0)) == BLIND[3]


def test_time_left_at_the_pace_the_schedule_measured() -> None:
    """`time_left` is None until progress moves, then the time to 100% at the measured pace,
    counted down between readings, and None again in a new status."""
    pace = PollPolicy(jitter=0).pace()
    pace.answered(0.0, job(0))
    assert pace.time_left(1.0) is None
    pace.answered(10.0, job(10))
    assert pace.time_left(10.0) == pytest.approx(90.0)  # 10% in 10 s since first seen
    pace.answered(15.0, job(10))
    pace.answered(20.0, job(20))
    pace.answered(30.0, job(30))
    assert pace.time_left(30.0) == pytest.approx(70.0)  # 70% to go at 1% a second
    assert pace.time_left(35.0) == pytest.approx(65.0)
    assert pace.time_left(500.0) == 0.0
    pace.answered(40.0, job(0, JobStatus.WAITING))
    assert pace.time_left(40.0) is None
    assert PollPolicy(progress_aware=False).pace().time_left(0.0) is None


def worked_example(text: str) -> list[list[str]]:
    """The rows of the worked example's table in `text` (a docstring or a docs page)."""
    rows = re.findall(r"^\s*\|\s*([\d.]+)\s*\|\s*(\d+)[^|]*\|\s*([\d.]*)\s*\|$", text, re.M)
    return [list(row) for row in rows]


def test_the_worked_example_is_what_the_schedule_does() -> None:
    """The worked example of `PollPolicy`'s docstring is what the schedule decides for a
    steady job of 10 minutes, and docs/schedule.md shows the same table and formula."""
    assert PollPolicy.__doc__ is not None
    stated = worked_example(PollPolicy.__doc__)
    pace, now, done = PollPolicy(jitter=0).pace(), 0.0, []
    while now < 600:
        progress = int(100 * now / 600)
        delay = pace.answered(now, job(progress))
        done.append([f"{now:g}" if now.is_integer() else f"{now:.1f}", str(progress), delay])
        now += delay
    done.append([f"{now:.1f}", "100", ""])
    for row in done:
        if row[2] != "":
            row[2] = f"{row[2]:g}" if float(row[2]).is_integer() else f"{row[2]:.1f}"
    assert stated == done
    page = (Path(__file__).parent.parent / "docs" / "schedule.md").read_text()
    assert worked_example(page) == stated
    (formula,) = re.findall(r"^```text\n(.*?)```", page, re.M | re.S)
    for line in formula.splitlines():
        assert line in PollPolicy.__doc__  # the page's formula is the docstring's

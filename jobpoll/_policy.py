"""`PollPolicy`: when to poll a job again, and which failures to ride out. Its docstring
states the schedule; `_pace` applies it."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import attrs
import backoff

from jobpoll import _defaults as defaults
from jobpoll._errors import ConfigurationError
from jobpoll._pace import Pace

#: The longest wait the model may ask for, in `max_lateness`: the bound of every lateness.
REACH = 3


def _option(kind: str, accepts: Callable[[Any], bool]) -> Any:
    """The one rule of an option: a value `accepts` refuses is a `ConfigurationError`."""

    def check(_policy: PollPolicy, attribute: attrs.Attribute[Any], value: Any) -> None:
        if not accepts(value):
            raise ConfigurationError(f"{attribute.name} must be {kind}, got {value!r}")

    return check


def _number(kind: str, within: Callable[[Any], bool], *, whole: bool = False) -> Any:
    types = int if whole else (int, float)
    return _option(
        kind,
        lambda value: not isinstance(value, bool) and isinstance(value, types) and within(value),
    )


_SECONDS = _number("a positive number of seconds", lambda value: 0 < value < math.inf)
_GRACE = _number("a number of seconds, 0 or more", lambda value: 0 <= value < math.inf)
_AT_LEAST_1 = _number("a number of 1 or more", lambda value: 1 <= value < math.inf)
_FRACTION = _number("a fraction from 0 to 1", lambda value: 0 <= value <= 1)
_SHARE = _number("a fraction above 0, up to 1", lambda value: 0 < value <= 1)
_TRIES = _number("a whole number of 1 or more", lambda value: value >= 1, whole=True)
_PERCENT = _number("a whole percent from 0 to 99", lambda value: 0 <= value < 100, whole=True)
_BOOL = _option("True or False", lambda value: isinstance(value, bool))
_CALLABLE = _option("callable", callable)


def _at_least(other: str) -> Any:
    def check(policy: PollPolicy, attribute: attrs.Attribute[Any], value: float) -> None:
        low = getattr(policy, other)
        if value < low:
            raise ConfigurationError(
                f"{attribute.name} ({value!r} s) must be at least {other} ({low!r} s)"
            )

    return check


def _deprecated(_policy: PollPolicy, field: attrs.Attribute[Any], _value: object) -> None:
    message = f"PollPolicy({field.alias}=...) is deprecated: max_lateness sets it, in seconds"
    # stacklevel: the call to PollPolicy(), past attrs' __init__ and validators.
    warnings.warn(message, DeprecationWarning, stacklevel=5)


_OLD_SHARE = attrs.validators.optional([_SHARE, _deprecated])
_OLD_SECONDS = attrs.validators.optional([_SECONDS, _deprecated])


@attrs.frozen(kw_only=True)
class PollPolicy:
    """How `wait_for_job` paces its polls and which failures it rides out.

    One knob for promptness, `max_lateness` (45 s): a job's end is seen at most that late
    for 95 jobs in 100 (p95), and at most `REACH` (3) times that for every job.

    - Every job, by construction: no delay asked for while a job is queued or running is
      longer than 3 x `max_lateness` (a failed poll's backoff and a `Retry-After` aside).
    - Every job, by construction, is seen within `max_lateness` if it runs reporting no
      progress, once its progress has jumped, or if it keeps to the model of `end` below
      (no wait crosses the earliest end its readings allow).
    - Beyond the model (a speed-up past `drift`, an earlier end, a jump to the end with no
      still reading before it, ...) a wait may cross the end: that 95 in 100 are still seen
      within `max_lateness` is measured, not built, on eighteen families of made-up jobs of
      20 s to 24 h, held-out seeds, `max_lateness` from 5 s to 300 s (bench_schedule.py).

    The model only saves polls within that promise. The first poll is immediate; after each
    poll that sees the job running, once its progress has moved in its status, the next
    comes after

        delay = jittered(max(tolerance, min(end - now, reach, 3 * max_lateness)))
        end   = since + watched * (1 + (k + 1) * left / (pace * watched)) ** (1 / (k + 1))

    - `jittered(d) = d * (1 - jitter * rng())`, so that waiters started together drift apart;
    - `tolerance = min(max(initial, 0.3 * age), max_lateness)`, `age` the time since the
      first answer: how late a job is seen once its end may come at any moment; the whole
      delay once a move in the status was a jump (more than a smooth job makes after a
      value read unchanged), as the job may jump to its end;
    - `reach = max(watched, max_lateness)`, `watched` how long the status has been seen
      (since `since`): a young job that outruns the model is seen late by at most that;
    - `end`: the earliest the job can end if its `pace` (the fastest, in percent a second,
      its readings allow, its last move's included) grows at most `drift` times each time
      its age doubles (`k = log2(drift)`), with `left` percent to go to `100 - early_end` (in
      the steps its progress moves in, and once it has run `100 - early_end` percent of the
      time it needs at its last move's pace; to 100 for a job whose last three moves each
      slowed), less a step it may have made since it was read.

    Until progress moves in the status, the n-th delay is `jittered(min(max(min(initial *
    factor**n, max_interval), still), cap))`: `still` is the tolerance and `cap` is
    `max_lateness` for a running job; `age / drift` and 3 x `max_lateness` for a queued one
    (CREATED, PERSISTED, SCHEDULED, WAITING), which cannot end before it runs. A failed poll
    takes the blind delay alone; a new status, or progress going back, starts from `initial`
    again. `progress_aware=False` keeps the blind schedule throughout (`delays()`).

    Worked example: a steady job of 10 minutes, `PollPolicy(jitter=0)`:

        | time (s) | progress read | delay (s) |
        |---------:|--------------:|----------:|
        |        0 |             0 |         2 |
        |        2 |             0 |         4 |
        |        6 |             1 |        45 |
        |       51 |             8 |        51 |
        |      102 |            17 |       102 |
        |      204 |            34 |       135 |
        |      339 |            56 |     129.9 |
        |    468.9 |            78 |      52.9 |
        |    521.8 |            86 |        45 |
        |    566.8 |            94 |        45 |
        |    611.8 |    100 (done) |           |

    11 polls, the end seen 12 s late; the blind schedule alone (`progress_aware=False`)
    takes 24.

    Change one option and keep the rest with `attrs.evolve(PollPolicy(), max_lateness=10)`.

    Args:
        max_lateness: how late a job's end may be seen, in seconds (45): the promise above;
            10 for a user watching a spinner, 300 for a batch, at a fraction of the polls.
        initial: the first blind delay, in seconds (2).
        factor: how much each blind delay grows over the one before (2; 1: a fixed interval).
        max_interval: the longest blind delay, in seconds (30): up to `max_lateness` before
            progress moves, in full after failures and with `progress_aware=False`.
        jitter: the share of a delay drawn at random (0.2; 1 is backoff's "full jitter").
        max_failures: how many failed polls in a row end the wait (10): the last is raised,
            those before are polled again (transport errors, 429, 5xx, an intermediary's
            HTML page); any answer that is a job resets the count.
        max_retry_after: the longest a server's `Retry-After` is obeyed for, in seconds
            (300), so a misconfigured header cannot park a waiter for a day.
        not_found_grace: seconds from the start of a wait during which a 404 for a job not
            seen yet is polled again, not raised as `NotFound` (0: the service answers a
            job's creation with the job, so a 404 is most often a wrong id). Set it for ids
            handed over by another system right after creation.
        first_contact_grace: seconds a wait rides out connection failures while its client
            has never had an answer (10): a server unreachable from the start is most often
            a wrong base URL or port. A resumed wait counts them from its first poll.
        stall_timeout: raise `JobStalled` once neither status nor progress has changed for
            this many seconds (None: off, since a job may sit queued for hours and be fine).
        progress_aware: aim polls at the end the job's progress predicts (True).
        drift: for experts, how many times faster the model lets a job move each time its
            age doubles (2; at least 1): larger covers more speed-ups, at more polls.
        early_end: for experts, how many percent short of 100 the model lets a job end (10;
            0 trusts progress). Neither moves an end past 3 x `max_lateness`.
        lateness, max_estimated_interval: deprecated (a `DeprecationWarning`), derived
            from `max_lateness`: the share of its age a job is polled at once its end may
            come (0.3), and the longest wait of the model, which can only be shortened.
        clock: the monotonic clock a wait's times are measured on.
        sleep: how to wait between polls (`asyncio.sleep`); with `clock`, what lets tests
            run a schedule in virtual time (see `jobpoll.testing.VirtualClock`).
        rng: uniform numbers in [0, 1) for the jitter; `random.Random(7).random` makes a
            schedule repeat exactly.
        wall_clock: the UTC wall clock (`time.time`), which only checkpoints read. Left
            out, these four are the real ones, looked up at each call: during a test on the
            pytest plugin's `jobpoll_clock`, that test's virtual ones.

    Raises:
        ConfigurationError: an option out of range (also a `ValueError`).
    """

    initial: float = attrs.field(default=2.0, validator=_SECONDS)
    factor: float = attrs.field(default=2.0, validator=_AT_LEAST_1)
    max_interval: float = attrs.field(default=30.0, validator=[_SECONDS, _at_least("initial")])
    jitter: float = attrs.field(default=0.2, validator=_FRACTION)
    max_failures: int = attrs.field(default=10, validator=_TRIES)
    max_retry_after: float = attrs.field(default=300.0, validator=_GRACE)
    not_found_grace: float = attrs.field(default=0.0, validator=_GRACE)
    first_contact_grace: float = attrs.field(default=10.0, validator=_GRACE)
    stall_timeout: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(_SECONDS)
    )
    progress_aware: bool = attrs.field(default=True, validator=_BOOL)
    max_lateness: float = attrs.field(default=45.0, validator=_SECONDS)
    drift: float = attrs.field(default=2.0, validator=_AT_LEAST_1)
    early_end: int = attrs.field(default=10, validator=_PERCENT)
    # Deprecated: out of the repr, which shows the options to set.
    lateness: float | None = attrs.field(default=None, validator=_OLD_SHARE, repr=False)
    _max_estimated_interval: float | None = attrs.field(
        default=None, alias="max_estimated_interval", validator=_OLD_SECONDS, repr=False
    )
    # Not part of equality: two policies are equal when they schedule alike.
    clock: Callable[[], float] = attrs.field(
        default=defaults.monotonic, validator=_CALLABLE, repr=False, eq=False
    )
    sleep: Callable[[float], Awaitable[object]] = attrs.field(
        default=defaults.sleep, validator=_CALLABLE, repr=False, eq=False
    )
    rng: Callable[[], float] = attrs.field(
        default=defaults.uniform, validator=_CALLABLE, repr=False, eq=False
    )
    wall_clock: Callable[[], float] = attrs.field(
        default=defaults.wall_clock, validator=_CALLABLE, repr=False, eq=False
    )

    @property
    def max_estimated_interval(self) -> float:
        """The longest wait the model may ask for: `REACH` x `max_lateness`, or less."""
        given = self._max_estimated_interval
        return min(REACH * self.max_lateness, math.inf if given is None else given)

    @functools.cached_property
    def blind_delays(self) -> tuple[float, ...]:
        """The blind delays before jitter (see `delays()`), up to the first that repeats."""
        # From `backoff.expo` (initial * factor**n, then max_interval for ever), once per
        # policy: every pace indexes this table, so a pace holds an index, not a generator.
        nominal = backoff.expo(base=self.factor, factor=self.initial, max_value=self.max_interval)
        next(nominal)  # primed, as backoff itself does
        delays: list[float] = []
        for delay in nominal:
            delays.append(delay)
            if delay >= self.max_interval or len(delays) > 64 or delays[-2:-1] == [delay]:
                break
        return tuple(delays)

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

    def jittered(self, delay: float) -> float:
        """`delay` shortened by a random share of itself, up to `jitter`."""
        jitter = self.jitter
        return delay * (1.0 - jitter * self.rng()) if jitter else delay

    def retry_delay(self, scheduled: float, retry_after: float | None) -> float:
        """The delay before polling again after a failure: the scheduled one, or longer when
        the server's `Retry-After` asks for it (cut to `max_retry_after`)."""
        if retry_after is None:
            return scheduled
        return max(scheduled, min(retry_after, self.max_retry_after))

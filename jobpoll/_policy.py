"""`PollPolicy`: when to poll a job again, and which failures to ride out.

The delays between polls grow exponentially to a cap (`backoff.expo`), each shortened by a
random share of itself (jitter), so that many waiters started together drift apart instead
of polling in step. Unlike backoff's `full_jitter`, the share is bounded (`jitter`), so the
first waits never collapse towards zero; and the random numbers come from the policy's own
`rng`, so a test can make a schedule repeat exactly.
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

    The defaults suit jobs that take seconds to hours. The first poll is immediate; the next
    come after 1, 1.5, 2.3, 3.4, ... seconds, growing by half each time up to one every
    30 seconds (about a minute and a quarter after the start). So a job of a few seconds is seen
    done within a second or two, while a job of two hours costs about 270 polls and is seen
    done at most 30 seconds late (0.4% of its time). Each delay is shortened by up to 20% at
    random, so waiters started together drift apart.

    Change one option and keep the rest with `attrs.evolve(PollPolicy(), max_interval=60)`.

    Args:
        initial: seconds between the first poll and the second.
        factor: how much each delay grows over the one before (1 for a fixed interval).
        max_interval: the longest delay between two polls, in seconds (jitter never exceeds it;
            only a server's `Retry-After` may ask for longer, see `max_retry_after`).
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
        stall_timeout: when set, raise `JobStalled` once neither status nor progress has changed
            for this many seconds (checked at each poll). Off by default: a job may sit queued
            for hours and still be fine.
        clock: the monotonic clock the deadline, the grace and the stall guard are measured on.
        sleep: how to wait between polls; `asyncio.sleep` by default. With `clock`, what lets
            tests run a schedule in virtual time (see `jobpoll.testing.VirtualClock`).
        rng: a source of uniform numbers in [0, 1) for the jitter, e.g.
            `random.Random(7).random` for a schedule that repeats exactly.

    Raises:
        ConfigurationError: an option out of range (also a `ValueError`).
    """

    initial: float = attrs.field(default=1.0, validator=_positive)
    factor: float = attrs.field(default=1.5, validator=_check_factor)
    max_interval: float = attrs.field(default=30.0, validator=_check_max_interval)
    jitter: float = attrs.field(default=0.2, validator=_check_jitter)
    max_failures: int = attrs.field(default=10, validator=_check_max_failures)
    max_retry_after: float = attrs.field(default=300.0, validator=_not_negative)
    not_found_grace: float = attrs.field(default=0.0, validator=_not_negative)
    stall_timeout: float | None = attrs.field(default=None, validator=_check_stall_timeout)
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
    virtual clock.
    """

    __slots__ = ("_nominal", "_policy")

    def __init__(self, policy: PollPolicy) -> None:
        self._policy = policy
        self._nominal = policy._nominal()

    def answered(self, now: float, job: Job) -> float:
        """The delay after a poll at `now` that saw `job` (not a terminal one)."""
        return self._policy._jittered(next(self._nominal))

    def failed(self, now: float) -> float:
        """The delay after a poll at `now` that failed (before any `Retry-After`)."""
        return self._policy._jittered(next(self._nominal))

"""`PollPolicy`: the delays it produces, their bounds with jitter, and its validation."""

from __future__ import annotations

import itertools
import math
import pickle
import random
import warnings
from typing import Any

import attrs
import pytest

from jobpoll import ConfigurationError, PollPolicy


def first(policy: PollPolicy, count: int) -> list[float]:
    return list(itertools.islice(policy.delays(), count))


def test_default_schedule_without_jitter() -> None:
    """The defaults double from 2 s and settle at one poll every 30 s."""
    delays = first(PollPolicy(jitter=0), 8)
    assert delays == pytest.approx([2, 4, 8, 16, 30, 30, 30, 30])


def test_fixed_interval() -> None:
    """A factor of 1 polls at a fixed interval."""
    assert first(PollPolicy(initial=5, factor=1, max_interval=5, jitter=0), 4) == [5, 5, 5, 5]


@pytest.mark.parametrize("seed", range(20))
def test_jitter_stays_within_its_share_and_under_the_cap(seed: int) -> None:
    """Each jittered delay lies between (1 - jitter) and 1 times its nominal delay."""
    nominal = first(PollPolicy(jitter=0), 40)
    jittered = first(PollPolicy(jitter=0.2, rng=random.Random(seed).random), 40)
    for delay, plain in zip(jittered, nominal, strict=True):
        assert 0.8 * plain <= delay <= plain
    assert max(jittered) <= 30


def test_jitter_does_not_collapse_the_first_waits() -> None:
    """Even the unluckiest draw keeps the first wait at 80% of `initial`, not near 0."""
    unlucky = PollPolicy(rng=lambda: 0.999999)
    assert first(unlucky, 3) == pytest.approx([1.6, 3.2, 6.4], rel=1e-5)


def test_jitter_draws_from_the_policys_rng() -> None:
    """The same random source gives the same schedule; the draw sets where in the band."""
    assert first(PollPolicy(rng=random.Random(7).random), 20) == first(
        PollPolicy(rng=random.Random(7).random), 20
    )
    policy = PollPolicy(initial=1, factor=1.5, jitter=0.5, rng=lambda: 0.5)
    assert first(policy, 2) == [0.75, 1.125]


def test_full_jitter_is_allowed() -> None:
    """jitter=1 is backoff's full jitter: anywhere from 0 to the nominal delay."""
    policy = PollPolicy(initial=1, factor=2, max_interval=60, jitter=1, rng=lambda: 0.75)
    delays = first(policy, 8)
    assert delays == pytest.approx([0.25, 0.5, 1, 2, 4, 8, 15, 15])


def test_each_iterator_starts_afresh() -> None:
    """Every wait draws its own delays from the start of the schedule."""
    policy = PollPolicy(initial=1, factor=1.5, jitter=0)
    assert first(policy, 3) == first(policy, 3) == [1, 1.5, 2.25]


@pytest.mark.parametrize(
    ("scheduled", "retry_after", "expected"),
    [
        pytest.param(4.0, None, 4.0, id="no-header"),
        pytest.param(4.0, 1.0, 4.0, id="shorter-than-scheduled"),
        pytest.param(4.0, 45.0, 45.0, id="longer-than-scheduled"),
        pytest.param(4.0, 86400.0, 300.0, id="capped"),
    ],
)
def test_retry_delay_honours_retry_after_up_to_the_cap(
    scheduled: float, retry_after: float | None, expected: float
) -> None:
    """A server's Retry-After lengthens the next delay, but never past `max_retry_after`."""
    assert PollPolicy().retry_delay(scheduled, retry_after) == expected


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"initial": 0}, "initial must be a positive", id="initial-zero"),
        pytest.param({"initial": -1.0}, "initial must be a positive", id="initial-negative"),
        pytest.param({"initial": float("nan")}, "initial", id="initial-nan"),
        pytest.param({"initial": "1"}, "initial", id="initial-str"),
        pytest.param({"initial": True}, "initial", id="initial-bool"),
        pytest.param({"factor": 0.5}, "factor must be a number of 1 or more", id="factor-shrinks"),
        pytest.param({"factor": float("inf")}, "factor", id="factor-inf"),
        pytest.param({"max_interval": 0.5}, r"max_interval \(0.5 s\) must be at least", id="cap"),
        pytest.param({"jitter": 1.5}, "jitter must be a fraction", id="jitter-big"),
        pytest.param({"jitter": -0.1}, "jitter", id="jitter-negative"),
        pytest.param({"max_failures": 0}, "max_failures", id="failures-zero"),
        pytest.param({"max_failures": 2.5}, "max_failures", id="failures-float"),
        pytest.param({"max_retry_after": -1}, "max_retry_after", id="retry-after-cap"),
        pytest.param({"not_found_grace": -1}, "not_found_grace", id="grace"),
        pytest.param({"stall_timeout": 0}, "stall_timeout", id="stall-zero"),
        pytest.param({"clock": 3.0}, "clock must be callable", id="clock"),
        pytest.param({"sleep": None}, "sleep must be callable", id="sleep"),
        pytest.param({"rng": 42}, "rng must be callable", id="rng"),
        pytest.param({"progress_aware": 1}, "progress_aware must be True or False", id="aware"),
        pytest.param({"max_lateness": 0}, "max_lateness must be a positive", id="lateness-0"),
        pytest.param({"max_lateness": math.inf}, "max_lateness", id="lateness-inf"),
        pytest.param({"max_lateness": "30"}, "max_lateness", id="lateness-str"),
        pytest.param({"max_estimated_interval": 0}, "max_estimated_interval", id="estimated"),
        pytest.param({"drift": 0.9}, "drift must be a number of 1 or more", id="drift-below-1"),
        pytest.param({"lateness": 0}, "lateness must be a fraction", id="lateness-zero"),
        pytest.param({"lateness": 1.5}, "lateness must be a fraction", id="lateness-big"),
        pytest.param({"early_end": 100}, "early_end must be a whole percent", id="early-100"),
        pytest.param({"early_end": 2.5}, "early_end must be a whole percent", id="early-float"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    """An option out of range is a `ConfigurationError` (a `ValueError`) naming it."""
    with pytest.raises(ConfigurationError, match=message) as caught:
        PollPolicy(**options)
    assert isinstance(caught.value, ValueError)


def test_evolve_keeps_the_rest_and_validates() -> None:
    """`attrs.evolve` changes one option, and the result is checked like any other."""
    policy = attrs.evolve(PollPolicy(), max_interval=60)
    assert (policy.initial, policy.factor, policy.max_interval) == (2.0, 2.0, 60)
    with pytest.raises(ConfigurationError):
        attrs.evolve(policy, initial=100)


def test_policy_is_frozen_with_a_readable_repr() -> None:
    """A policy cannot change under a running wait, and its repr shows the schedule only."""
    policy = PollPolicy()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.initial = 2  # type: ignore[misc]
    assert repr(policy) == (
        "PollPolicy(initial=2.0, factor=2.0, max_interval=30.0, jitter=0.2, max_failures=10, "
        "max_retry_after=300.0, not_found_grace=0.0, first_contact_grace=10.0, "
        "stall_timeout=None, progress_aware=True, max_lateness=45.0, drift=2.0, early_end=10)"
    )


def test_max_lateness_sets_the_longest_wait_of_the_model() -> None:
    """The knob's default is 45 s, and the longest wait the model may ask for (read back as
    `max_estimated_interval`) is 3 times it, whatever the knob."""
    assert PollPolicy().max_lateness == 45
    assert PollPolicy().max_estimated_interval == 135
    assert PollPolicy(max_lateness=5).max_estimated_interval == 15
    assert attrs.evolve(PollPolicy(), max_lateness=300).max_estimated_interval == 900


@pytest.mark.parametrize("option", ["lateness", "max_estimated_interval"])
def test_deprecated_options_warn_where_they_are_passed(option: str) -> None:
    """`lateness=` and `max_estimated_interval=` still work, with a `DeprecationWarning`
    that names `max_lateness` and points at the caller's line."""
    with pytest.warns(DeprecationWarning, match=f"{option}=.*max_lateness") as caught:
        PollPolicy(**{option: 0.5})
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        PollPolicy(max_lateness=10, drift=3, early_end=5)  # no warning for the current options


def test_policy_pickles_without_copying_a_random_state() -> None:
    """A policy crosses process boundaries (worker pools), and each process keeps its own
    jitter: unpickled copies do not replay one generator's draws in step."""
    policy = PollPolicy(max_interval=60)
    copies = [pickle.loads(pickle.dumps(policy)) for _ in range(2)]
    assert copies[0] == policy
    assert first(copies[0], 10) != first(copies[1], 10)

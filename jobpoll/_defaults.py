"""The clock, sleep, wall clock and random numbers jobpoll uses when given none: the real ones,
or, for one test, a virtual clock's (the pytest plugin's `jobpoll_clock` sets them).

Each default is a function that looks the current ones up at every call, in a context
variable: a `PollPolicy` or a `JobsClient` made anywhere (at import time too) follows a test's
virtual clock while that test runs, and nothing outside the test's context changes. Looked up,
not bound, also so that a pickled policy refers to the process it lands in, rather than
carrying a copy of one generator's state that would make every worker draw the same jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar

import attrs


@attrs.frozen
class Clocks:
    """What `monotonic`, `sleep`, `wall_clock` and `uniform` stand for within `using`."""

    monotonic: Callable[[], float]
    sleep: Callable[[float], Awaitable[object]]
    wall_clock: Callable[[], float]
    uniform: Callable[[], float]


_CURRENT: ContextVar[Clocks | None] = ContextVar("jobpoll_clocks", default=None)


def monotonic() -> float:
    """`time.monotonic()`, or the current virtual clock's time."""
    current = _CURRENT.get()
    return time.monotonic() if current is None else current.monotonic()


def sleep(seconds: float) -> Awaitable[object]:
    """`asyncio.sleep(seconds)`, or the current virtual clock's sleep."""
    current = _CURRENT.get()
    return asyncio.sleep(seconds) if current is None else current.sleep(seconds)


def wall_clock() -> float:
    """`time.time()`, or the current virtual clock's UTC wall clock."""
    current = _CURRENT.get()
    return time.time() if current is None else current.wall_clock()


def uniform() -> float:
    """`random.random()`, or the current test's seeded generator's next number."""
    current = _CURRENT.get()
    return random.random() if current is None else current.uniform()


def sleeps_for_real(chosen: Callable[[float], Awaitable[object]]) -> bool:
    """Whether `chosen` (a policy's `sleep`) is `asyncio.sleep` here and now, so that a loop
    timer may stand in for it."""
    return chosen is asyncio.sleep or (chosen is sleep and _CURRENT.get() is None)


@contextlib.contextmanager
def using(clocks: Clocks) -> Iterator[Clocks]:
    """Make `clocks` what the defaults stand for in this context until the block ends."""
    token = _CURRENT.set(clocks)
    try:
        yield clocks
    finally:
        _CURRENT.reset(token)

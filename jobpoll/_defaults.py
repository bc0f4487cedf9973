"""The policy a wait uses when given none, and so the time jobpoll runs in when not told:
the real clocks, or, for one test, a virtual clock's (the pytest plugin's `jobpoll_clock`).

It is held in a context variable rather than a module global, so that setting it for a test
changes nothing outside that test's context and ends with it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from jobpoll._policy import PollPolicy

#: The policy of a wait given none, outside any `defaulting_to` block.
REAL_TIME = PollPolicy()

_DEFAULT_POLICY: ContextVar[PollPolicy | None] = ContextVar("jobpoll_default_policy", default=None)


def default_policy() -> PollPolicy:
    """The policy of a wait given none; its `clock` and `sleep` are those of a `JobsClient`
    given none."""
    return _DEFAULT_POLICY.get() or REAL_TIME


@contextlib.contextmanager
def defaulting_to(policy: PollPolicy) -> Iterator[PollPolicy]:
    """Make `policy` the default in this context until the block ends (then the one before)."""
    token = _DEFAULT_POLICY.set(policy)
    try:
        yield policy
    finally:
        _DEFAULT_POLICY.reset(token)

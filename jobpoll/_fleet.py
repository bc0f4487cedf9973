"""`Fleet`: how a fan-out's polls, all together, yield to a server that asks them to, by the
model `JobsWait`'s docstring states, pausing for `fleet_pause` (as `jobpoll.saq`'s workers do).
"""

from __future__ import annotations

import logging
import math

from jobpoll._errors import JobPollError, RateLimited, ServiceUnavailable
from jobpoll._policy import PollPolicy
from jobpoll._rules import fleet_pause
from jobpoll._state import JobState

logger = logging.getLogger("jobpoll")


def _throttled_reason(error: JobPollError) -> str:
    if isinstance(error, (RateLimited, ServiceUnavailable)):
        return f"the server answered {error.http_status}"
    return "the server could not be connected to"


class Fleet:
    """The window of polls in flight, and the pause every poll takes together."""

    def __init__(self, policy: PollPolicy, max_in_flight: int) -> None:
        self.policy = policy
        self.max_in_flight = max_in_flight
        self.window = max_in_flight
        self.resume_at = -math.inf  # no poll starts before this
        self.paused = 0  # how many pauses have begun
        self._streak = 0  # pauses in a row, with no answer since
        # Whether the last answer to a poll sent since the last pause began was throttled: a
        # throttled answer right after one that was not is taken for a stray one.
        self._throttled_last = False

    def restore(self, window: int, resume_at: float | None) -> None:
        self.window = max(1, min(window, self.max_in_flight))
        if resume_at is not None:
            self.resume_at = resume_at

    def sent(self, state: JobState) -> None:
        state.sent_after_pauses = self.paused

    def answered(self, state: JobState) -> None:
        """An answer after any pause: the server copes; grow the window back by one."""
        if state.sent_after_pauses != self.paused:
            return  # sent before the last pause began: it says nothing of the server now
        self._throttled_last = False
        if self.window < self.max_in_flight:
            self.window += 1
        if self.resume_at != -math.inf:  # the first answer after a pause: the storm is over
            self.resume_at = -math.inf
            self._streak = 0

    def throttled(self, state: JobState, error: JobPollError, now: float) -> None:
        """Halve the window; pause every job's polls, unless it is a stray throttled answer.

        A stray one (no `Retry-After`, right after an answer that was not throttled) only
        halves the window: a server that refuses a small share of requests (a busy instance
        behind a balancer) would otherwise hold a large fan-out to one window per pause.
        """
        if state.sent_after_pauses != self.paused:
            return  # sent before the last pause began: the same storm, already paused for
        retry_after = getattr(error, "retry_after", None)
        stray, self._throttled_last = not self._throttled_last and retry_after is None, True
        if stray and self.window > 1:
            self.window //= 2
            logger.info("%s; at most %d polls in flight", _throttled_reason(error), self.window)
            return
        pause = fleet_pause(self.policy, self._streak, retry_after)
        self._streak += 1
        self.paused += 1
        self.resume_at = now + pause
        self.window = max(1, self.window // 2)
        logger.info(
            "%s; all polls pause for %.1f s, then at most %d in flight",
            _throttled_reason(error),
            pause,
            self.window,
        )

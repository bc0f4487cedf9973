"""The rules of a wait, with no I/O: what a poll sent, answered or failed does to a job's
`JobState`. `JobWait`, `JobsWait` and `SaqWaits` all apply them, so a job ends alike
whichever waits on it.
"""

from __future__ import annotations

import logging
import math
from typing import TypeVar

import attrs

from jobpoll import _metrics as metrics
from jobpoll import _pace
from jobpoll._config import check_positive
from jobpoll._errors import JobPollError, JobStalled, NotFound, TransportError, WaitTimeout
from jobpoll._models import Job
from jobpoll._policy import PollPolicy
from jobpoll._state import JobState, PaceState

logger = logging.getLogger("jobpoll")

E = TypeVar("E", bound=JobPollError)


def check_timeout(timeout: float | None) -> None:
    if timeout is not None:
        check_positive("timeout", timeout)  # a ConfigurationError, which is a ValueError


@attrs.define(eq=False)
class Rules:
    """The rules for the jobs of one wait: its policy, timeout and deadline (on the policy's
    clock, set when the first job starts unless given). A fan-out's jobs share one."""

    policy: PollPolicy
    timeout: float | None
    deadline: float | None = None

    def begin(self, state: JobState, now: float) -> None:
        """Start a job's clocks at its first poll, and the deadline with the first job's."""
        if state.pace is None:
            state.pace = PaceState()
            state.started_at = state.next_poll_at = now
            if self.timeout is not None and self.deadline is None:
                self.deadline = now + self.timeout

    def send(self, state: JobState, now: float) -> float | None:
        """Count a poll about to be sent; its timeout: the time left to the deadline, if any
        (`WaitTimeout` once it passed)."""
        remaining = None if self.deadline is None else self.deadline - now
        if remaining is not None and remaining <= 0:
            raise self.timed_out(state)
        state.polls += 1
        return remaining

    def answered(self, state: JobState, job: Job, now: float) -> tuple[bool, float | None]:
        """Whether the answer is news (first, changed or terminal), and the delay before the
        next poll (None: the job ended); `JobStalled` after `policy.stall_timeout` unchanged."""
        pace = state.pace
        assert pace is not None
        state.failures = 0
        state.answers += 1
        state.last_error = None
        last, state.job = state.job, job
        if (
            last is None
            or job.progress != last.progress
            or job.raw_status != last.raw_status
            or job.is_terminal
        ):
            state.changed_at = now
            delay = None if job.is_terminal else _pace.answered(self.policy, pace, now, job)
            if delay is None:
                metrics.wait_ended(job, None, now - state.started_at)
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "job %s: %s %d%% after %d polls%s",
                    state.job_id,
                    job.raw_status,
                    job.progress,
                    state.polls,
                    "" if delay is None else f", next poll in {delay:.1f} s",
                )
            return True, delay
        stall_timeout = self.policy.stall_timeout
        if stall_timeout is not None and now - state.changed_at >= stall_timeout:
            raise self._ends(state, JobStalled(job, now - state.changed_at), now)
        return False, _pace.answered(self.policy, pace, now, job)

    def failed(
        self, state: JobState, error: JobPollError, now: float, *, since: float = -math.inf
    ) -> float:
        """The delay before the next poll, or the error that ends the wait. `since`: when this
        process began polling the job, from which a resumed wait's first-contact grace counts."""
        pace = state.pace
        assert pace is not None
        policy = self.policy
        visibility_delay = (
            isinstance(error, NotFound)
            and state.job is None
            and now - state.started_at < policy.not_found_grace
        )
        if not (error.transient or visibility_delay) or self._unreachable(state, error, now, since):
            raise self._ends(state, error, now)
        state.last_error = error
        if self.deadline is not None and now >= self.deadline:
            raise self.timed_out(state)  # e.g. the request was cut short by the deadline
        if not visibility_delay:  # the grace is bounded by its own time, not by a count
            state.failures += 1
            if state.failures >= policy.max_failures:
                raise self._ends(state, error, now)
        delay = policy.retry_delay(_pace.failed(policy, pace), getattr(error, "retry_after", None))
        if visibility_delay:
            why = f"not found yet, within the grace of {policy.not_found_grace:g} s;"
        else:
            why = f"{error}; failure {state.failures} of at most {policy.max_failures} in a row,"
        logger.info("job %s: %s next poll in %.1f s", state.job_id, why, delay)
        return delay

    def _unreachable(self, state: JobState, error: JobPollError, now: float, since: float) -> bool:
        """Whether nothing has ever answered, past `first_contact_grace`: most likely a wrong
        URL or port, and minutes of silent retries help nobody."""
        return (
            isinstance(error, TransportError)
            and error.never_answered
            and not error.reached
            and now - max(state.started_at, since) >= self.policy.first_contact_grace
        )

    def timed_out(self, state: JobState) -> WaitTimeout:
        """The error that ends a wait whose deadline passed (every driver's timeout)."""
        assert self.timeout is not None
        error = WaitTimeout(
            state.job_id, timeout=self.timeout, job=state.job, last_error=state.last_error
        )
        error.__cause__ = state.last_error
        return self._ends(state, error, self.policy.clock())

    def _ends(self, state: JobState, error: E, now: float) -> E:
        """`error`, which ends the wait, counted as its end: unless it `stops_all` (a refused
        key, a service never reached), which a fan-out and a SAQ worker do not take for any
        wait's end (they poll again once the setup is fixed)."""
        if not error.stops_all:
            metrics.wait_ended(state.job, error, now - state.started_at)
        return error

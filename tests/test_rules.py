"""The rules of a wait, as functions of a job's state and the time: no server, no sleep.

`JobWait`, `JobsWait` and `jobpoll.saq` only drive these rules, so what they decide here is
what each of the three does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobpoll import (
    ApiError,
    Job,
    JobStalled,
    JobStatus,
    NotFound,
    PollPolicy,
    RateLimited,
    ServerError,
    WaitTimeout,
)
from jobpoll._rules import Rules
from jobpoll._state import JobState

CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def job(progress: int, status: JobStatus = JobStatus.RUNNING) -> Job:
    return Job(
        id="j", created_at=CREATED, progress=progress, status=status, raw_status=status.value
    )


def started(rules: Rules, now: float = 0.0) -> JobState:
    state = JobState(job_id="j")
    rules.begin(state, now)
    return state


def test_an_answer_is_news_once_and_ends_the_wait_when_terminal() -> None:
    """The first answer and each change are news, with the next delay; a repeat is no news;
    a terminal answer ends the wait (no delay)."""
    rules = Rules(PollPolicy(jitter=0), None)
    state = started(rules)
    assert rules.send(state, 0.0) is None
    news, delay = rules.answered(state, job(0), 0.0)
    assert news
    assert delay == 2
    _news, _delay = rules.answered(state, job(0), 2.0)
    assert not _news
    assert rules.answered(state, job(100, JobStatus.FINISHED), 10.0) == (True, None)
    assert (state.polls, state.answers, state.changed_at) == (1, 3, 10.0)


def test_failures_are_ridden_out_up_to_max_failures() -> None:
    """A transient failure gives the next delay (or the server's `Retry-After`, if longer);
    the one that reaches `max_failures` in a row is raised; an answer resets the count."""
    rules = Rules(PollPolicy(jitter=0, max_failures=3), None)
    state = started(rules)
    assert rules.failed(state, ServerError(500), 0.0) == 2
    assert rules.failed(state, RateLimited(429, retry_after=20.0), 2.0) == 20
    rules.answered(state, job(5), 22.0)
    assert state.failures == 0
    for now in (30.0, 40.0):
        rules.failed(state, ServerError(500), now)
    with pytest.raises(ServerError):
        rules.failed(state, ServerError(500), 50.0)


def test_a_404_is_raised_unless_within_the_grace_for_a_job_not_seen_yet() -> None:
    """A 404 ends the wait at once, but within `not_found_grace` of the start for a job never
    seen, where it is polled again (without counting as a failure)."""
    rules = Rules(PollPolicy(jitter=0, not_found_grace=10), None)
    state = started(rules)
    assert rules.failed(state, NotFound(404, job_id="j"), 5.0) > 0
    assert state.failures == 0
    with pytest.raises(NotFound):
        rules.failed(state, NotFound(404, job_id="j"), 11.0)
    with pytest.raises(ApiError):
        rules.failed(started(rules), ApiError(400), 0.0)


def test_the_deadline_and_the_stall_guard() -> None:
    """No poll is sent once the deadline has passed (`WaitTimeout`, with the last error as its
    cause); a job that has not changed for `stall_timeout` is `JobStalled`."""
    rules = Rules(PollPolicy(jitter=0, stall_timeout=60), 100)
    state = started(rules, 1000.0)
    assert rules.deadline == 1100
    assert rules.send(state, 1040.0) == 60
    rules.answered(state, job(3), 1040.0)
    with pytest.raises(JobStalled):
        rules.answered(state, job(3), 1100.0)
    error = ServerError(500)
    with pytest.raises(WaitTimeout) as caught:
        rules.failed(state, error, 1100.0)
    assert caught.value.__cause__ is error
    with pytest.raises(WaitTimeout):
        rules.send(state, 1100.0)

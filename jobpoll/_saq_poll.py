"""`Link`: one link of a wait in `jobpoll.saq`: one poll by the rules (`_rules`), then the
hand-over of the wait's checkpoint to the next link, or of its outcome."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import attrs

from jobpoll._checkpoint import job_checkpoint, resume_job
from jobpoll._client import JobsClient
from jobpoll._errors import JobFailedError, JobPollError
from jobpoll._ids import check_job_id
from jobpoll._models import JobResult
from jobpoll._policy import PollPolicy
from jobpoll._rules import Rules, fleet_pause
from jobpoll._saq_links import Links
from jobpoll._state import JobState
from jobpoll._wait import check_timeout

logger = logging.getLogger("jobpoll")


class _Over(Exception):
    """The wait is over: its result, after `polls` polls."""

    def __init__(self, result: JobResult, polls: int) -> None:
        super().__init__(result.job_id)
        self.result, self.polls = result, polls


@attrs.frozen
class Link:
    """Link `step` of the wait on `job_id`, run by a worker with its `client`."""

    links: Links
    policy: PollPolicy
    client: JobsClient
    job_id: str
    step: int

    async def run(
        self,
        checkpoint: dict[str, Any] | None,
        timeout: float | None,  # noqa: ASYNC109 - the wait's deadline
    ) -> str:
        """Poll, and hand over; what it did (see `SaqWaits.poll`)."""
        links, policy, job_id, step = self.links, self.policy, self.job_id, self.step
        live, until, gen, streak = await links.begin(job_id, step)
        if not live:
            return "superseded"
        now = time.time()
        if until > now:
            # Resume in a trickle rather than all at once: the first answers end the pause.
            due = until + random.random() * min(until - now, policy.max_interval)
            await links.hand_over(job_id, step, checkpoint, due, timeout)
            return "paused"
        try:
            done, saved, due = await self._poll_once(checkpoint, timeout, gen, streak)
        except _Over as over:
            await links.deliver(over.result, step, over.polls)
            return "over"
        await links.hand_over(job_id, step, saved, due, timeout)
        return done

    async def _poll_once(
        self,
        checkpoint: dict[str, Any] | None,
        timeout: float | None,  # noqa: ASYNC109 - the wait's deadline
        gen: int,
        streak: int,
    ) -> tuple[str, dict[str, Any] | None, float]:
        """One poll by the rules: what it did, the checkpoint to hand over, and when (epoch
        seconds) the next link is due. Not made ("held") when this worker's setup is at
        fault: the error is kept for the submitter, and the same checkpoint retried later.

        Raises:
            _Over: the wait is over (the job ended, or an error ended the wait).
        """
        job_id, clock = self.job_id, self.policy.clock
        state = JobState(job_id=job_id)
        delay: float | None
        try:
            if checkpoint is None:
                state.job_id = check_job_id(job_id)
                check_timeout(timeout)
                rules = Rules(self.policy, timeout)
            else:
                rules, state, _owed = resume_job(checkpoint, job_id, self.policy)
            rules.begin(state, clock())
            request_timeout = rules.send(state, clock())
            try:
                job = await self.client.get_job(job_id, timeout=request_timeout)
            except JobPollError as exc:
                if exc.stops_all:
                    logger.error(  # noqa: TRY400 - no traceback: the message says it all
                        "job %s: not polled, this worker cannot poll: %s", job_id, exc
                    )
                    await self.links.held(job_id, self.step, exc)
                    return "held", checkpoint, time.time() + self.policy.max_interval
                if exc.throttles:
                    await self._throttled(exc, gen, streak)
                now = clock()
                delay = rules.failed(state, exc, now)
            else:
                if streak:
                    await self.links.calm(gen)
                now = clock()
                _news, delay = rules.answered(state, job, now)
                if delay is None:
                    error = JobFailedError(job) if job.failed else None
                    raise _Over(JobResult(job_id, job, error), state.polls)
        except JobPollError as exc:  # the wait's own end (a CheckpointError too: no restart)
            raise _Over(JobResult(job_id, state.job, exc), state.polls) from None
        state.next_poll_at = now + delay
        if rules.deadline is not None:  # the next link times out, not polls, once past it
            delay = min(delay, rules.deadline - now)
        return "polled", job_checkpoint(rules, state), time.time() + delay

    async def _throttled(self, error: JobPollError, gen: int, streak: int) -> None:
        pause = fleet_pause(self.policy, streak, getattr(error, "retry_after", None))
        if await self.links.throttle(gen, time.time() + pause):
            logger.info("%s; every worker's polls pause for %.1f s", error, pause)

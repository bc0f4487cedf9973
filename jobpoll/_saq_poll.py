"""`Link`: one link of a wait in `jobpoll.saq`: one poll, by the rules of `_rules`, then the
hand-over of the wait's checkpoint to the next link, or of its outcome."""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime
from typing import Any

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

__all__ = ["Link"]

logger = logging.getLogger("jobpoll")


def _epoch(iso: str | None) -> float | None:
    return None if iso is None else datetime.fromisoformat(iso).timestamp()


class _Over(Exception):
    """A wait is over: its result, and how many polls it made."""

    def __init__(self, result: JobResult, polls: int) -> None:
        super().__init__(result.job_id)
        self.result, self.polls = result, polls


class _Held(Exception):
    """A poll not made: this worker cannot poll (`error`, of its setup)."""

    def __init__(self, error: JobPollError) -> None:
        super().__init__(str(error))
        self.error = error


class Link:
    """Link `step` of the wait on `job_id`, run by a worker with its `client`."""

    __slots__ = ("client", "job_id", "links", "policy", "step")

    def __init__(
        self, links: Links, policy: PollPolicy, client: JobsClient, job_id: str, step: int
    ) -> None:
        self.links = links
        self.policy = policy
        self.client = client
        self.job_id = job_id
        self.step = step

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
            saved = await self._poll_once(checkpoint, timeout, gen, streak)
        except _Held as held:
            await links.held(job_id, step, held.error)
            retry_at = time.time() + policy.max_interval
            await links.hand_over(job_id, step, checkpoint, retry_at, timeout)
            return "held"
        except _Over as over:
            await links.deliver(over.result, step, over.polls)
            return "over"
        due = _epoch(saved["next_poll_at"]) or time.time()
        deadline = _epoch(saved.get("deadline"))
        if deadline is not None:
            due = min(due, deadline)
        await links.hand_over(job_id, step, saved, due)
        return "polled"

    async def _poll_once(
        self,
        checkpoint: dict[str, Any] | None,
        timeout: float | None,  # noqa: ASYNC109 - the wait's deadline
        gen: int,
        streak: int,
    ) -> dict[str, Any]:
        """One poll of a wait, by the rules: the checkpoint to hand over.

        Raises:
            _Over: the wait is over (the job ended, or an error ended the wait).
            _Held: an error of this worker's setup: not polled.
        """
        client, policy, job_id = self.client, self.policy, self.job_id
        clock = policy.clock
        state = JobState(job_id=job_id)
        try:
            if checkpoint is None:
                state.job_id = check_job_id(job_id)
                check_timeout(timeout)
                rules = Rules(policy, timeout)
            else:
                rules, state, _owed = resume_job(checkpoint, job_id, policy)
            rules.begin(state, clock())
            request_timeout = rules.send(state, clock())
            try:
                job = await client.get_job(job_id, timeout=request_timeout)
            except JobPollError as exc:
                if exc.stops_all:
                    logger.error(  # noqa: TRY400 - no traceback: the message says it all
                        "job %s: not polled, this worker cannot poll: %s", job_id, exc
                    )
                    raise _Held(exc) from None
                if exc.throttles:
                    await self._throttled(exc, gen, streak)
                now = clock()
                state.next_poll_at = now + rules.failed(state, exc, now)
            else:
                if streak:
                    await self.links.calm(gen)
                now = clock()
                _news, delay = rules.answered(state, job, now)
                if delay is None:
                    error = JobFailedError(job) if job.failed else None
                    raise _Over(JobResult(job_id, job, error), state.polls)
                state.next_poll_at = now + delay
        except JobPollError as exc:  # the wait's own end (a CheckpointError too: no restart)
            raise _Over(JobResult(job_id, state.job, exc), state.polls) from None
        return job_checkpoint(rules, state)

    async def _throttled(self, error: JobPollError, gen: int, streak: int) -> None:
        pause = fleet_pause(self.policy, streak, getattr(error, "retry_after", None))
        if await self.links.throttle(gen, time.time() + pause):
            logger.info("%s; every worker's polls pause for %.1f s", error, pause)

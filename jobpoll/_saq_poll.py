"""`Link`: one link of a wait on SAQ, run by a worker: one poll by the rules (`_rules`), sent
at its turn under the fleet's rate, then the hand-over of the wait's checkpoint to the next
link, due when the next poll is, or of its outcome. Its times are on Redis's clock (its
policy's `clock` is the worker's `FleetRate.now`), and a link that ran late moves its wait's
deadline by the time lost (`lost_time`).
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
from saq import Job as SaqJob

from jobpoll._client import JobsClient
from jobpoll._errors import JobFailedError, JobPollError
from jobpoll._gate import accepted, refused_by
from jobpoll._ids import check_job_id
from jobpoll._models import JobResult
from jobpoll._policy import PollPolicy
from jobpoll._rules import Rules, check_timeout
from jobpoll._saq_books import Ended, SaqRecord, script_end, start_of
from jobpoll._saq_form import link_checkpoint, resume_link
from jobpoll._saq_links import Kept, Links, result_to_json
from jobpoll._saq_logs import wait_ended, wait_started
from jobpoll._saq_outcomes import Outcomes
from jobpoll._saq_rate import HORIZON, SLOW_START_WAIT, FleetRate, Turn
from jobpoll._state import JobState

logger = logging.getLogger("jobpoll")

#: Seconds a link may start after it was due and still count as on schedule (links are moved
#: into SAQ's queue every quarter second, and wait their turn for a free worker there).
LOST_AFTER = 5.0


def lost_time(late: float | None) -> float:
    """The time a link `late` seconds after it was due (None: not known) lost its wait, which
    the wait's deadline leaves out: the whole delay past `LOST_AFTER` (its worker died, Redis
    was full, every worker was busy or none ran), else none."""
    return late if late is not None and late > LOST_AFTER else 0.0


@attrs.frozen
class Link:
    """Link `step` of the wait on `job_id`, polled by a worker with its `client`."""

    links: Links
    outcomes: Outcomes
    policy: PollPolicy
    client: JobsClient
    rate: FleetRate
    job_id: str
    step: int
    #: This worker's name in the wait's record while the link runs (`_saq_rescue`).
    runner: str
    #: The SAQ job the link runs as, whose start and end its scripts write (`_saq_books`);
    #: None: none, or one whose start and end SAQ writes (`booked`).
    job: SaqJob | None = None

    async def run(self, earlier: dict[str, Any] | None = None) -> str | Ended:
        """Run the link: its begin (`begin`), then what follows it (`go_on`)."""
        return await self.go_on(await self.begin(), earlier)

    async def begin(self) -> tuple[Turn, Kept] | None:
        """The link's begin (`Links.begin`), its SAQ start written in it (`job`): its turn
        under the fleet's rate and the state it runs from; None: it is not live."""
        job = self.job
        start = None if job is None else start_of(job)
        longest = max(HORIZON, self.policy.max_interval)
        return await self.links.begin(
            self.job_id, self.step, self.rate, longest, self.runner, start
        )

    async def go_on(
        self, begun: tuple[Turn, Kept] | None, earlier: dict[str, Any] | None = None
    ) -> str | Ended:
        """What follows the link's begin (`begun`): its poll, or its hand-over unpolled to
        its place in the line (`SaqWaits.poll`). It runs from the state its wait's records
        keep, or, a link of an earlier version, from the one its SAQ arguments (`earlier`)
        carry."""
        job_id, step, rate = self.job_id, self.step, self.rate
        longest = max(HORIZON, self.policy.max_interval)
        if begun is None:
            return "superseded"
        turn: Turn | None = begun[0]
        kept = Kept.carried_by(earlier, begun[1].checkpoint is not None) or begun[1]
        checkpoint, timeout, due = kept.checkpoint, kept.timeout, kept.due
        late = None if due is None else rate.now() - due
        turn = await self.wait_for(turn, longest)
        if turn is None:
            return "superseded"
        if step == 0:
            wait_started(job_id)
        if not turn.taken:  # run a little before its place, for SAQ's scheduling to be late
            now = rate.now()
            place = now + max(0.0, turn.delay - HORIZON)
            lost = lost_time(late)
            end = self._end("paused")
            await self.links.hand_over(
                job_id, step, checkpoint, place, now, timeout, lost=lost, end=end
            )
            return self._ended("paused", end)
        return await self.poll(checkpoint, timeout, turn.sent_in, late)

    async def wait_for(self, turn: Turn | None, longest: float) -> Turn | None:
        """Wait for `turn` (sleeping in this worker), asking again as the fleet's rate says;
        the turn to poll in (or to hand over at), or None: the link is no longer live."""
        pause = SLOW_START_WAIT
        while turn is not None and (turn.again or (turn.taken and turn.delay > 0)):
            if turn.again:  # the fleet's slow start is full: wait here, and ask again
                await self.policy.sleep(pause)
                pause = min(2 * pause, HORIZON)
                turn = await self._turn(longest)
                continue
            await self.policy.sleep(turn.delay)
            # A cut while this poll slept voids its turn (`_saq_rate.CUT`: the fleet's next
            # turn is one spacing after the cut): read the fleet's state before sending.
            await self.links.read_rate(self.rate)
            if self.rate.control.cuts == turn.sent_in:
                break
            turn = await self._turn(longest)
        return turn

    async def _turn(self, longest: float) -> Turn | None:
        """A turn asked for again (None: the link is no longer live)."""
        begun = await self.links.begin(self.job_id, self.step, self.rate, longest, self.runner)
        return None if begun is None else begun[0]

    async def poll(
        self,
        checkpoint: Any,
        timeout: float | None,  # noqa: ASYNC109 - the wait's deadline
        sent_in: int,
        late: float | None = None,
    ) -> str | Ended:
        """The poll, sent in cut `sent_in` of the fleet's rate, `late` seconds after it was
        due (None: not known), and what follows it."""
        job_id, clock = self.job_id, self.policy.clock
        state = JobState(job_id=job_id)
        delay: float | None
        answered: float | None = None  # when the poll was accepted, on Redis's clock
        try:
            if checkpoint is None:
                state.job_id = check_job_id(job_id)
                check_timeout(timeout)
                rules = Rules(self.policy, timeout)
            else:
                rules, state = resume_link(checkpoint, job_id, self.policy)
                self._forgive(rules, late)
            rules.begin(state, clock())
            request_timeout = rules.send(state, clock())
            try:
                job = await self.client.get_job(job_id, timeout=request_timeout, paced=False)
            except JobPollError as exc:
                answered = self.rate.now() if accepted(exc) else None
                if exc.stops_all:
                    return await self._held(exc, checkpoint, timeout, answered, late)
                if exc.throttles:
                    await self._refused(exc, sent_in)
                now = clock()
                delay = rules.failed(state, exc, now)
            else:
                answered = self.rate.accepted()
                now = clock()
                _news, delay = rules.answered(state, job, now)
                if delay is None:
                    error = JobFailedError(job) if job.failed else None
                    return await self._over(JobResult(job_id, job, error), state, answered)
        except JobPollError as exc:  # the wait's own end (a CheckpointError too: no restart)
            return await self._over(JobResult(job_id, state.job, exc), state, answered)
        state.next_poll_at = now + delay
        if rules.deadline is not None:  # the next link times out, not polls, once past it
            delay = min(delay, rules.deadline - now)
        saved = link_checkpoint(rules, state)
        end = self._end("polled")
        await self.links.hand_over(
            job_id, self.step, saved, now + delay, now, answered_at=answered, end=end
        )
        return self._ended("polled", end)

    def _end(self, result: str) -> SaqRecord | None:
        """The link's SAQ end as it returns `result`, for its hand-over to write (None: SAQ
        writes it, `script_end`)."""
        return script_end(self.job, result)

    def _ended(self, result: str, end: SaqRecord | None) -> str | Ended:
        """`result`, as the link returns it once its hand-over wrote its SAQ `end` (`Ended`)."""
        return result if end is None else Ended(result)

    def _forgive(self, rules: Rules, late: float | None) -> None:
        """Move the wait's deadline by the time the link lost (`lost_time`)."""
        lost = lost_time(late)
        if lost and rules.deadline is not None:
            rules.deadline += lost
            logger.info(
                "job %s: its poll ran %.0f s after it was due; its deadline moves as much",
                self.job_id,
                lost,
            )

    async def _over(
        self, result: JobResult, state: JobState, answered: float | None
    ) -> str | Ended:
        data = result_to_json(result, polls=state.polls)
        outcome = self.outcomes.job(data)
        end = self._end("over")
        if await self.links.deliver(data, outcome, self.step, answered_at=answered, end=end):
            took = self.policy.clock() - state.started_at if state.polls else 0.0
            wait_ended(result, state.polls, took)
        return self._ended("over", end)

    async def _held(
        self,
        error: JobPollError,
        checkpoint: Any,
        timeout: float | None,  # noqa: ASYNC109 - the wait's deadline
        answered: float | None,
        late: float | None,
    ) -> str | Ended:
        """Not polled: this worker's setup is at fault. The error is kept for the submitter,
        and the wait handed over as it was (the time it lost carried on), to be tried again
        later."""
        logger.error("job %s: not polled, this worker cannot poll: %s", self.job_id, error)
        await self.links.held(self.job_id, self.step, error)
        now = self.policy.clock()
        retry_at = now + self.policy.max_interval
        end = self._end("held")
        await self.links.hand_over(
            self.job_id,
            self.step,
            checkpoint,
            retry_at,
            now,
            timeout,
            answered_at=answered,
            lost=lost_time(late),
            end=end,
        )
        return self._ended("held", end)

    async def _refused(self, error: JobPollError, sent_in: int) -> None:
        """The service refused the poll: cut the fleet's rate, unless another worker did since
        the poll was sent (the mirror is read afresh to know)."""
        rate = self.rate
        if sent_in == rate.control.cuts:
            await self.links.read_rate(rate)
        cut = rate.refused(error, sent_in)
        if cut is not None and await self.links.cut_rate(cut):
            logger.info(
                "%s; every worker's polls are held to %.3g a second",
                refused_by(error),
                cut.state.rate,
            )

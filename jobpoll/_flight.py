"""`Flight`: a fan-out's polls in flight, and what wakes its scheduler (held only weakly by
their callbacks, so that a fan-out dropped after a `break` is collected and cancels them);
`Fleet`: how many may be in flight, and how they yield to a throttling server."""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from jobpoll._client import JobsClient
from jobpoll._errors import ApiError, JobPollError
from jobpoll._models import Job
from jobpoll._policy import PollPolicy
from jobpoll._rules import fleet_pause
from jobpoll._state import JobState

logger = logging.getLogger("jobpoll")

#: A poll's outcome: the job, or the error (returned, not raised: an unretrieved exception in
#: a task that a closed fan-out dropped would be logged as a bug).
PollOutcome = Job | JobPollError


async def _poll(client: JobsClient, job_id: str, request_timeout: float | None) -> PollOutcome:
    try:
        return await client.get_job(job_id, timeout=request_timeout)
    except JobPollError as exc:
        return exc


def weakly(method: Callable[..., None]) -> Callable[..., None]:
    """`method`, holding its object weakly: a call once it is collected does nothing."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> None:
        bound = ref()
        if bound is not None:
            bound(*args)

    return call


class Flight:
    """The polls in flight (`running`: task to row), those back and not taken yet
    (`finished`), those cancelled and not seen to end (`dying`), and the alarm: a timer on
    the event loop or, with a policy's own `sleep` (a virtual clock), a task sleeping."""

    def __init__(self, sleep: Callable[[float], Awaitable[object]]) -> None:
        self._sleep = sleep
        self.running: dict[asyncio.Future[PollOutcome], int] = {}
        self.finished: deque[asyncio.Future[PollOutcome]] = deque()
        self.dying: set[asyncio.Future[Any]] = set()
        self.alarm: asyncio.TimerHandle | asyncio.Future[Any] | None = None
        self.alarm_at = math.inf
        self._wakeup: asyncio.Future[None] | None = None
        self._on_done = weakly(self._done)
        self._on_alarm = weakly(self._rang)

    def _done(self, task: asyncio.Future[PollOutcome]) -> None:
        self.finished.append(task)
        self.wake()

    def _rang(self, source: object) -> None:
        """`source`: None from a timer, else the sleeper task that ended."""
        if source is None or source is self.alarm:
            self.alarm, self.alarm_at = None, math.inf
            self.wake()

    def send(self, client: JobsClient, job_id: str, timeout: float | None, row: int) -> None:
        task = asyncio.ensure_future(_poll(client, job_id, timeout))
        task.add_done_callback(self._on_done)
        self.running[task] = row

    def wake(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def wait(self, wake_at: float, now: float) -> None:
        """Sleep until a poll comes back, something wakes the scheduler, or `wake_at`."""
        loop = asyncio.get_running_loop()
        if wake_at < self.alarm_at:
            self._drop_alarm()
            delay = max(0.0, wake_at - now)
            if self._sleep is asyncio.sleep:  # the default: a timer is far cheaper than a task
                self.alarm = loop.call_later(delay, self._on_alarm, None)
            else:
                self.alarm = asyncio.ensure_future(self._sleep(delay))
                self.alarm.add_done_callback(self._on_alarm)
            self.alarm_at = wake_at
        self._wakeup = loop.create_future()
        await self._wakeup  # once done (or cancelled), `wake` leaves it be

    def _drop_alarm(self) -> None:
        alarm, self.alarm, self.alarm_at = self.alarm, None, math.inf
        if alarm is not None:
            alarm.cancel()
            if isinstance(alarm, asyncio.Future):
                self.dying.add(alarm)  # still owned: seen to end at the next step

    def cancel(self) -> list[int]:
        """The rows that were polled; await `bury()` once the caller has kept them."""
        running, self.running = self.running, {}
        self._drop_alarm()
        self.finished.clear()
        self.dying.update(running)
        for task in self.dying:
            task.cancel()
        self.wake()  # an iteration in another task must see the change (aclose from there)
        return list(running.values())

    async def bury(self) -> None:
        """Wait for the cancelled polls to end (if cancelled meanwhile, the rest stay listed)."""
        while self.dying:
            done, _ = await asyncio.wait(self.dying)
            self.dying -= done
            for task in done:  # mark a bug's exception as seen: it was dropped on purpose
                if not task.cancelled():
                    task.exception()


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

    def answered(self, state: JobState) -> None:
        """An answer after any pause: the server copes; grow the window back by one."""
        if state.sent_after_pauses != self.paused:
            return  # sent before the last pause began: it says nothing of the server now
        self._throttled_last = False
        self.window = min(self.window + 1, self.max_in_flight)
        if self.resume_at != -math.inf:  # the first answer after a pause: the storm is over
            self.resume_at = -math.inf
            self._streak = 0

    def throttled(self, state: JobState, error: JobPollError, now: float) -> None:
        """Halve the window and pause every job's polls; a stray throttled answer only
        halves it: a server that refuses a small share of requests (a busy instance behind a
        balancer) would otherwise hold a large fan-out to one window per pause."""
        if state.sent_after_pauses != self.paused:
            return  # sent before the last pause began: the same storm, already paused for
        reason = "the server could not be connected to"
        if isinstance(error, ApiError):  # a 429 or a 503
            reason = f"the server answered {error.http_status}"
        retry_after = getattr(error, "retry_after", None)
        stray, self._throttled_last = not self._throttled_last and retry_after is None, True
        if stray and self.window > 1:
            self.window //= 2
            logger.info("%s; at most %d polls in flight", reason, self.window)
            return
        pause = fleet_pause(self.policy, self._streak, retry_after)
        self._streak += 1
        self.paused += 1
        self.resume_at = now + pause
        self.window = max(1, self.window // 2)
        logger.info(
            "%s; all polls pause for %.1f s, then at most %d in flight", reason, pause, self.window
        )

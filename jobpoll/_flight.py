"""`Flight`: a fan-out's polls in flight, and what wakes its scheduler.

Every task here is owned: a poll is in `running` until the scheduler takes its answer, or in
`dying` once cancelled, until it is seen to end. What polls and the alarm call back holds the
flight only weakly: a fan-out dropped after a `break` is collected at once, and its finalizer
cancels what is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from jobpoll._client import JobsClient
from jobpoll._errors import JobPollError
from jobpoll._models import Job

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
        """The alarm rang: a timer (`source` None), or a sleeper task that ended."""
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
        if wake_at < self.alarm_at:
            self._set_alarm(wake_at, now)
        self._wakeup = wakeup = asyncio.get_running_loop().create_future()
        try:
            await wakeup
        finally:
            self._wakeup = None

    def _set_alarm(self, wake_at: float, now: float) -> None:
        if self.alarm is not None:
            self.alarm.cancel()
            if isinstance(self.alarm, asyncio.Future):
                self.dying.add(self.alarm)  # still owned: seen to end at the next step
        delay = max(0.0, wake_at - now)
        if self._sleep is asyncio.sleep:  # the default: a timer is far cheaper than a task
            self.alarm = asyncio.get_running_loop().call_later(delay, self._on_alarm, None)
        else:
            sleeper = asyncio.ensure_future(self._sleep(delay))
            sleeper.add_done_callback(self._on_alarm)
            self.alarm = sleeper
        self.alarm_at = wake_at

    def cancel(self) -> list[int]:
        """Cancel the polls in flight and the alarm; the rows that were polled. Await `bury()`
        next, once the caller has kept the rows."""
        running, self.running = self.running, {}
        alarm, self.alarm, self.alarm_at = self.alarm, None, math.inf
        if isinstance(alarm, asyncio.Future):
            self.dying.add(alarm)
        elif alarm is not None:
            alarm.cancel()
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

    def drop(self) -> None:
        """Cancel every task at once, without waiting: the fan-out is being collected."""
        for task in [*self.running, *self.dying, self.alarm]:
            if task is not None:
                with contextlib.suppress(RuntimeError):  # the event loop may be closed already
                    task.cancel()

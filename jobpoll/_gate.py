"""`Gate`: where each request of one client waits its turn, so that everything that shares
the client (lone waits in many tasks, fan-outs, `get_job` calls) shares one rate.

Two bounds, each dropped when it no longer binds, so that a client whose service never
refuses pays one attribute test per request, and the time of each answer noted (what the
first refusal measures the service by):

- **Slow start.** A client's first requests go out in a window that starts at
  `INITIAL_WINDOW` requests out at once and grows by one with each answer (it doubles each
  round trip, as TCP's does): a thousand waits started at once do not hit a rate limit with a
  thousand requests before the first answer says whether there is one. The window is dropped
  once it is as wide as the connection pool, or at the first refusal.
- **The rate** of `RateControl`, once the service has refused a request (or from the start
  with a ceiling): requests leave evenly spaced.

Requests waiting for either take their turns by **place**: the time they entered, except that
a job whose request was refused (or given no turn within its timeout) keeps that request's
place for its next one (`Places`). Without it, the retry of a refused poll waits behind the
whole line again: behind a thousand waits at 50 a second, twenty seconds more for the unlucky
job, and the end of a fan-out waits for it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from collections.abc import Awaitable, Callable

import attrs

from jobpoll._config import check_positive
from jobpoll._errors import JobPollError, TransportError
from jobpoll._models import Job
from jobpoll._rate import RateControl
from jobpoll._state import RateState

logger = logging.getLogger("jobpoll")

#: Requests out at once before any answer came back.
INITIAL_WINDOW = 8
#: A request's place in line: when it entered, and how many entered before it (requests
#: that enter in the same step of a virtual clock keep their order).
Place = tuple[float, int]
#: The most jobs whose refused request's place is kept (`Places`); past it, the oldest
#: places are forgotten (their next requests take a place at the end of the line).
PLACES_KEPT = 4096


class Line:
    """Turns waiting to be handed on, earliest place first (ties: the first added). A turn
    given up (its request cancelled or out of time) is done and `dropped`: skipped when it
    comes up, and the line is rebuilt without such turns once they are over half of it
    (dropping each from the middle of a heap would cost a pass over the whole line)."""

    def __init__(self) -> None:
        self._heap: list[tuple[Place, int, asyncio.Future[bool]]] = []
        self._added = itertools.count()
        self._dropped = 0

    def add(self, place: Place, turn: asyncio.Future[bool]) -> None:
        heapq.heappush(self._heap, (place, next(self._added), turn))

    def dropped(self) -> None:
        """A turn in the line was given up (it is done)."""
        self._dropped += 1
        if self._dropped > 64 and 2 * self._dropped > len(self._heap):
            self._heap = [entry for entry in self._heap if not entry[2].done()]
            heapq.heapify(self._heap)
            self._dropped = 0

    def __bool__(self) -> bool:
        """Whether a turn still waits (the given-up ones at the front are dropped)."""
        heap = self._heap
        while heap and heap[0][2].done():
            heapq.heappop(heap)
            self._dropped = max(0, self._dropped - 1)
        return bool(heap)

    def first(self) -> asyncio.Future[bool]:
        """The waiting turn with the earliest place, taken out of the line (check first)."""
        return heapq.heappop(self._heap)[2]

    def __len__(self) -> int:
        """The turns held, given-up ones not yet cleared included."""
        return len(self._heap)


class Places:
    """The place in line kept for a job whose request was not served: refused by the service,
    or given no turn within its timeout. The job's next request (its wait's retry) takes that
    place, not one at the end of the line, and only that one: requests of the same job side
    by side take places of their own, and a request that took a kept place and was not served
    either leaves a place of the moment it failed (a job refused again and again never goes
    before a request that came after its last refusal). The oldest past `PLACES_KEPT` are
    forgotten (a wait that ended without a retry leaves its place behind).
    """

    def __init__(self) -> None:
        self._kept: dict[str, Place] = {}
        self._entered = itertools.count()

    def take(self, job_id: str, now: float) -> tuple[Place, bool]:
        """The place of a request of `job_id` entering at `now`, and whether it is a kept one
        (taken: the next request of the job enters anew)."""
        kept = self._kept.pop(job_id, None)
        return (self.new(now), False) if kept is None else (kept, True)

    def new(self, now: float) -> Place:
        """A place at the end of the line, for a request entering at `now`."""
        return (now, next(self._entered))

    def keep(self, job_id: str, place: Place | None, now: float) -> None:
        """Keep `place` for the job's next request (None: a place of `now`)."""
        kept = self._kept
        kept.pop(job_id, None)  # moved to the end of the dict: the oldest are the first
        kept[job_id] = self.new(now) if place is None else place
        while len(kept) > PLACES_KEPT:
            del kept[next(iter(kept))]


class Gate:
    """The turn-taking of one client's requests: `enter` before sending, `leave` after."""

    def __init__(
        self,
        max_rate: float | None,
        width: int,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[object]],
    ) -> None:
        self.control = RateControl(max_rate)
        self.clock = clock
        self.sleep = sleep
        self.width = width  # the window is dropped once this wide (the pool's size)
        self.window = INITIAL_WINDOW if width > INITIAL_WINDOW else 0  # 0: no window
        self.out = 0  # requests out while there is a window
        self._waiting = Line()  # for the window
        self._line = Line()  # for the rate, behind the head
        self._head_taken = False
        self.places = Places()
        #: Whether a request may have to wait: the one test on the way of every request.
        self.engaged = self.window > 0 or self.control.limited

    async def in_turn(
        self,
        send: Callable[[float | None], Awaitable[Job | JobPollError]],
        job_id: str,
        seconds: float | None,
    ) -> Job | JobPollError:
        """`send(timeout)` once it is the request's turn, with what is left of its timeout
        (`seconds`); a `TransportError` if no turn came within it."""
        if seconds is not None:
            check_positive("timeout", seconds)
        place, kept = self.places.take(job_id, self.clock())
        left_behind = None if kept else place  # what a request not served leaves (`Places`)
        waited = await self.enter(seconds, place)
        if waited is None or (seconds is not None and seconds - waited <= 0):
            if waited is not None:
                self.leave(None, self.control.cuts)
            self.places.keep(job_id, left_behind, self.clock())
            rate = self.rate()
            held = "" if rate == math.inf else f" (it holds its requests to {rate:.3g} a second)"
            return TransportError(
                f"request for job {job_id!r} not sent: the client had no turn for it within its"
                f" timeout of {seconds:g} s{held}",
                job_id=job_id,
                transient=True,
            )
        sent_in = self.control.cuts
        outcome: Job | JobPollError | None = None
        try:
            outcome = await send(None if seconds is None else seconds - waited)
        finally:
            self.leave(outcome, sent_in, job_id, left_behind)
        return outcome

    async def enter(self, within: float | None, place: Place) -> float | None:
        """Wait for this request's turn at `place` in line (`Line`): the seconds waited, or
        None if its turn would come after `within` seconds (it waited them)."""
        started = self.clock()
        if self.control.started_at is None:
            self.control.started_at = started
        if self.window and not await self._take_window(started, within, place):
            return None
        try:
            waited = await self._take_turn(started, within, place)
        except BaseException:
            self._leave_window()
            raise
        if waited is None:
            self._leave_window()
        return waited

    async def _take_turn(self, started: float, within: float | None, place: Place) -> float | None:
        """Wait in line for a turn under the rate: the request at the head of the line sleeps
        until it may leave, the others wait to be handed the head."""
        control = self.control
        if not control.limited:
            return self.clock() - started
        if self._head_taken:
            left = self._left(started, within)
            if not await self._queue(self._line, place, left, self._pass_head):
                return None
        else:
            self._head_taken = True
        try:
            while control.limited:
                now = self.clock()
                delay = control.delay(now)
                if delay <= 0:
                    break
                if within is not None and now + delay - started > within:
                    await self.sleep(max(0.0, started + within - now))
                    return None
                await self.sleep(min(delay, 1.0))  # a rate that grows is seen within a second
            control.sent(self.clock())
        finally:
            self._pass_head()
        return self.clock() - started

    def _left(self, started: float, within: float | None) -> float | None:
        return None if within is None else max(0.0, started + within - self.clock())

    async def _queue(
        self,
        line: Line,
        place: Place,
        within: float | None,
        hand_on: Callable[[], None],
    ) -> bool:
        """Wait in `line` at `place` until handed a turn (True), or for `within` seconds on
        the event loop's clock, a bound even where the client's is virtual (False). A turn
        handed and not taken (cancelled in the same step) is handed on. Not
        `asyncio.wait_for`, which on Python 3.11 drops a cancellation that lands as the turn
        is handed."""
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[bool] = loop.create_future()
        line.add(place, turn)
        timer = None if within is None else loop.call_later(within, _expire, turn)
        taken = False
        try:
            taken = await turn
        finally:
            if timer is not None:
                timer.cancel()
            if not taken:
                if turn.done() and not turn.cancelled() and turn.result():
                    hand_on()
                else:
                    turn.cancel()
                    line.dropped()
        return taken

    def _pass_head(self) -> None:
        line = self._line
        if line:
            line.first().set_result(True)  # the head stays taken, by that one
        else:
            self._head_taken = False

    async def _take_window(self, started: float, within: float | None, place: Place) -> bool:
        if self.out < self.window and not self._waiting:
            self.out += 1
            return True
        left = self._left(started, within)
        return await self._queue(self._waiting, place, left, self._leave_window)

    def _leave_window(self) -> None:
        if self.window:
            self.out -= 1
        self._hand_on()

    def _hand_on(self) -> None:
        waiting = self._waiting
        while waiting and (self.out < self.window or not self.window):
            if self.window:
                self.out += 1
            waiting.first().set_result(True)

    def leave(
        self, outcome: object, sent_in: int, job_id: str | None = None, place: Place | None = None
    ) -> None:
        """A request entered in cut `sent_in` ended with `outcome`: a job, an error, or None
        (cancelled). Only an HTTP answer says something of the rate. A refused request of
        `job_id` leaves its `place` to the job's next one (`Places`; None: a place of now, for
        a request whose place was a kept one)."""
        control = self.control
        answered = accepted(outcome)
        refusal = outcome if isinstance(outcome, JobPollError) and outcome.throttles else None
        if refusal is not None:
            if job_id is not None:
                self.places.keep(job_id, place, self.clock())
            retry_after, certain = refusal_of(refusal)
            if control.throttled(self.clock(), sent_in, retry_after, certain=certain):
                logger.info(
                    "%s; this client's requests are held to %.3g a second",
                    refused_by(refusal),
                    control.state.rate,
                )
            if control.limited and self.window:
                self.window = 0  # the rate takes over
        elif answered:
            control.answered(self.clock())
        if self.window:
            self.out -= 1
            if answered:
                self.window += 1
                if self.window >= self.width:
                    self.window = 0
        self.engaged = control.limited or self.window > 0
        self._hand_on()

    def learned(self, now: float) -> RateState | None:
        """What the client learned of the service's rate limit (None: nothing), its time on a
        clock that reads `now` (a checkpoint's)."""
        state = self.control.state
        if state.rate is None:
            return None
        return attrs.evolve(state, cut_at=now - (self.clock() - state.cut_at))

    def resume(self, saved: RateState, now: float) -> None:
        """Go on from a rate learned before, its time on a clock that reads `now`, unless
        this client has learned its own (`RateControl.restore`)."""
        self.control.restore(attrs.evolve(saved, cut_at=self.clock() - (now - saved.cut_at)))
        if self.control.limited:
            self.window = 0
            self.engaged = True
            self._hand_on()

    def rate(self) -> float:
        """The rate requests are held to now (`math.inf`: none)."""
        return self.control.rate_at(self.clock()) if self.control.limited else math.inf


def _expire(turn: asyncio.Future[bool]) -> None:
    if not turn.done():
        turn.set_result(False)


def accepted(outcome: object) -> bool:
    """Whether a request's `outcome` (a job, an error, None: cancelled) is an answer of the
    service that is no refusal: what the rate the service accepts is measured from."""
    if isinstance(outcome, JobPollError):
        return not outcome.throttles and bool(getattr(outcome, "http_status", 0))
    return outcome is not None


def refusal_of(error: JobPollError) -> tuple[float | None, bool]:
    """A refusal's `Retry-After`, and whether it is certain (`RateControl.throttled`): a
    429 ("too many requests": this client's). A 503 is the service's state, which a sick
    instance behind a balancer shares with a throttling gateway, `Retry-After` or not: it
    cuts from the second in a row."""
    retry_after = getattr(error, "retry_after", None)
    return retry_after, getattr(error, "http_status", 0) == 429


def refused_by(error: JobPollError) -> str:
    """Who refused, for a log line."""
    status = getattr(error, "http_status", None)
    return (
        "the server could not be connected to"
        if status is None
        else f"the server answered {status}"
    )

"""`VirtualClock`: time that moves only when a wait sleeps, so schedules run without sleeping."""

from __future__ import annotations

import asyncio


class VirtualClock:
    """A monotonic clock and a matching `sleep` that moves it instead of waiting.

    Give the same clock to the fake service, to a `PollPolicy`
    (`PollPolicy(clock=clock, sleep=clock.sleep)`) and to the `JobsClient` (the same two
    keywords: it keeps its rate limit on them), and a job scripted to run for an hour is
    waited for in milliseconds, with every delay on record.

    Each `sleep` moves time on by its own delay, which models one waiter (or waiters taking
    turns) exactly; it is not a scheduler for many concurrent sleepers.

    Attributes:
        now: the current time, in seconds.
        start: the time the clock was created at.
        sleeps: every delay `sleep` was asked for, in order.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.start = start
        self.now = start
        self.sleeps: list[float] = []
        #: The wall clock's reading (UTC seconds since the epoch) at `start`: 2026-01-01.
        self.epoch = 1_767_225_600.0

    def __repr__(self) -> str:
        return f"<VirtualClock now={self.now:g} after {len(self.sleeps)} sleeps>"

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        """The UTC wall clock matching this clock, in seconds since the epoch: `epoch` plus
        the time moved on. Pass it as `PollPolicy(wall_clock=clock.wall)` so a checkpoint's
        UTC times are virtual too."""
        return self.epoch + (self.now - self.start)

    def advance(self, seconds: float) -> None:
        """Move time on by `seconds`."""
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """Record the delay and move time on by it, without waiting; still a suspension point
        (`asyncio.sleep(0)`), where other tasks run and a cancellation lands."""
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)

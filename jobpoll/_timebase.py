"""`Timebase`: a policy's clock and the UTC wall clock read at one moment, to move a
checkpoint's times between processes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from jobpoll._pace import longest_delay

if TYPE_CHECKING:
    from jobpoll._policy import PollPolicy


#: The times a checkpoint holds lie between these. A deadline further away (a timeout of
#: thousands of years, a user's "forever") is saved as the latest: no wait can tell them apart.
EARLIEST = datetime(1971, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
#: How far a checkpoint's `taken_at` may lie ahead of this machine's wall clock and still be
#: read as taken just now: a day, more than any clock that is merely off (a wrong time zone
#: is at most 14 hours); further ahead, it was typed wrong and its times mean nothing.
MAX_LEAD = 86400.0


class Timebase:
    """The offset between a policy's clock and the UTC wall clock, read once.

    Taking a checkpoint, `now` is the policy's clock and `taken_at` the wall clock at the
    same moment; resuming one, `now` is read in the new process and `taken_at` is the
    checkpoint's, so a time `t` of the old clock is `now + (wall(t) - wall_now)` there.
    """

    __slots__ = ("latest_due", "now", "origin", "taken_at", "wall_now")

    def __init__(self, policy: PollPolicy, taken_at: datetime | None = None) -> None:
        self.now = policy.clock()
        self.wall_now = policy.wall_clock()
        if taken_at is None:
            self.taken_at = datetime.fromtimestamp(self.wall_now, UTC)
        else:
            lead = taken_at.timestamp() - self.wall_now
            if lead > MAX_LEAD:
                raise ValueError(
                    f"taken_at {taken_at:%Y-%m-%dT%H:%M:%SZ} lies {lead:.0f} s ahead of this"
                    f" machine's clock, more than the {MAX_LEAD:.0f} s a clock may be off"
                )
            # A wall clock behind the checkpoint's counts as no time passed since: time on a
            # wait's clock never goes back, and the deadline is as far as when it was taken.
            self.taken_at = taken_at
            self.wall_now = max(self.wall_now, taken_at.timestamp())
        #: `taken_at` on this process's clock: a time saved relative to it is this plus it.
        self.origin = self.from_utc(self.taken_at)
        #: The latest a saved poll (or pause) may be due: the policy's longest delay after
        #: `taken_at`, the latest a wait of it could have set (a later time, tampered with,
        #: would park the wait for ever; one of a longer policy's comes sooner).
        self.latest_due = self.origin + longest_delay(policy)

    def to_utc(self, moment: float) -> datetime:
        """A time of this process's clock as UTC, from `EARLIEST` to `LATEST` (a deadline
        long passed is as passed at either)."""
        seconds = self.wall_now + (moment - self.now)
        return datetime.fromtimestamp(
            min(max(seconds, EARLIEST.timestamp()), LATEST.timestamp()), UTC
        )

    def from_utc(self, moment: datetime) -> float:
        """A UTC time on this process's clock."""
        return self.now + (moment.timestamp() - self.wall_now)

    def due(self, seconds: float) -> float:
        """When a saved poll (or pause), in seconds since the epoch, is due on this
        process's clock: at most `latest_due`."""
        return min(self.now + (seconds - self.wall_now), self.latest_due)

    def relative(self, moment: float) -> float:
        """A time of this process's clock as seconds after `taken_at` (rounded to 1 µs), 0
        at most: a time not set yet (0.0) lies ahead of a clock that reads below 0."""
        return min(round(moment - self.now, 6), 0.0)

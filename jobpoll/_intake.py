"""`Intake`: the ids given to a fan-out, each taken in once, a slice at a time. The call's list
is made distinct as it is taken in (at the call, a million ids would hold the loop for 0.1 s),
the set of ids given only when first needed (a million-id set slows every full collection)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any
from uuid import UUID

from jobpoll._errors import InvalidJobId, JobPollError
from jobpoll._ids import all_plain_job_ids, check_job_id

#: How many jobs are set up at a time before the fan-out yields to the event loop: a slice
#: costs a few milliseconds, so taking in a million ids never stalls the loop.
SLICE = 1000
#: How many ids read from an async source may wait to be taken in before the reading pauses.
BACKLOG = 10 * SLICE


def checked_ids(job_ids: Iterable[str | UUID], name: str) -> list[str]:
    """The ids as plain `str`, in order, duplicates kept; `InvalidJobId` naming the first bad."""
    if isinstance(job_ids, list | tuple) and all_plain_job_ids(job_ids):
        return list(job_ids)  # checked at C speed: a million ids must not hold the loop
    checked: list[str] = []
    for position, job_id in enumerate(job_ids):
        try:
            checked.append(check_job_id(job_id))
        except JobPollError as exc:
            exc.args = (f"{name}[{position}]: {exc.args[0]}",)
            raise
    return checked


class Intake:
    """The ids given so far (`ids`): the first `taken` are taken in (row `i` is `ids[i]`),
    those from `read` on wait to be (between the two: ids moved down or dropped). `wake` is
    called whenever there are new ids to take in, or the source ended."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.ids: list[str] = []
        self.taken = 0
        self.read = 0
        # The call's list is sifted up to `_sift_end`, with `_taken_in` (the ids taken in,
        # only while sifting); later ids are checked against `_seen`.
        self._sift_end = 0
        self._taken_in: set[str] | None = None
        self._seen: set[str] | None = None
        #: Values from an async source that could never be sent, by their keys among the ids:
        #: reported, never polled.
        self.invalid: dict[str, InvalidJobId] = {}
        self.source_open = False  # the source's reader may still add ids
        self.source_error: BaseException | None = None
        self._room = asyncio.Event()  # clear while the reader waits for room

    @property
    def total(self) -> int:
        """How many distinct ids were given (a repeat in the call's list until dropped)."""
        return len(self.ids) - (self.read - self.taken)

    @property
    def waiting(self) -> bool:
        return self.read < len(self.ids)

    def unstarted(self) -> list[str]:
        """The ids given and not taken in yet, each once, without the invalid values."""
        # While the call's list is sifted, an id may repeat one taken in already.
        skipped = self.invalid.keys() | (self._taken_in or set())
        return [job_id for job_id in dict.fromkeys(self.ids[self.read :]) if job_id not in skipped]

    def _seen_ids(self) -> set[str]:
        if self._seen is None:
            self._seen = set(self.ids)
        return self._seen

    def extend(self, ids: list[str]) -> int:
        """Add the ids not given before, in order; how many were new."""
        job_ids = self.ids
        before = len(job_ids)
        if not job_ids and self._seen is None:  # the call's: up to a slice made distinct now
            if len(ids) <= SLICE:
                job_ids.extend(dict.fromkeys(ids))
            else:
                job_ids.extend(ids)
                self._sift_end = len(job_ids)
        else:
            seen = self._seen_ids()
            for job_id in ids:
                if job_id not in seen:
                    seen.add(job_id)
                    job_ids.append(job_id)
        self.wake()
        return len(job_ids) - before

    def add(self, ids: list[str]) -> int:
        """`extend`, a repeat within `ids` counted once (as `JobsWait.add()` says)."""
        self._seen_ids()
        return self.extend(ids)

    def restored(self, ids: list[str]) -> None:
        """Ids a checkpoint took in already (each with its row): taken in at once."""
        self._seen_ids().update(ids)
        self.ids.extend(ids)
        self.read = self.taken = len(self.ids)

    def take(self) -> list[str]:
        """Take in the next slice of ids not taken in before, each moved to its row's place."""
        job_ids, start, write = self.ids, self.read, self.taken
        end = min(len(job_ids), start + SLICE)
        sift_end, taken_in = self._sift_end, self._taken_in
        taken: list[str] = []
        for index in range(start, end):
            job_id = job_ids[index]
            if index < sift_end:
                if taken_in is None:
                    self._taken_in = taken_in = set()
                if job_id in taken_in:
                    continue
                taken_in.add(job_id)
            if write != index:
                job_ids[write] = job_id
            write += 1
            taken.append(job_id)
        self.read, self.taken = end, write
        if end >= sift_end:
            self._taken_in = None  # the call's list is sifted: no repeat can come any more
        if end == len(job_ids) and write < end:
            del job_ids[write:]  # what was moved down or dropped
            self.read = write
        if len(job_ids) - self.read < BACKLOG:
            self._room.set()
        return taken

    def take_from_source(self, value: object, position: int) -> asyncio.Event | None:
        """Add a value of the source; an event to wait for before reading on, if any."""
        try:
            job_id = check_job_id(value)
        except InvalidJobId as exc:
            exc.args = (f"job_ids item {position} (from the async iterable): {exc.args[0]}",)
            exc.__traceback__ = None  # it holds this frame, so the fan-out's wake
            # Labelled (a str as it is, else its repr after a NUL) and keyed apart from every
            # id that can be sent, and from each other: each value is a result of its own.
            exc.job_id = value if isinstance(value, str) else f"\x00{value!r}"
            job_id = f"\x00{position}"
            self.invalid[job_id] = exc
        self.add([job_id])
        if len(self.ids) - self.read < BACKLOG:
            return None
        self._room.clear()
        return self._room


async def read_source(intake: weakref.ref[Intake], source: AsyncIterable[Any]) -> None:
    """Holds the intake only between two ids: a fan-out dropped after a `break` is collected,
    and its finalizer cancels this task."""
    position = 0
    error: BaseException | None = None
    try:
        async for job_id in source:
            owner = intake()
            if owner is None:
                return
            room = owner.take_from_source(job_id, position)
            position += 1
            del owner
            if room is not None:
                await room.wait()
            elif position % SLICE == 0:
                await asyncio.sleep(0)  # a source that never waits must not stall the loop
    except asyncio.CancelledError:  # an error unless the fan-out was closed (then unread)
        error = RuntimeError("the task reading job_ids was cancelled")
        raise
    except Exception as exc:
        error = exc
    finally:
        owner = intake()
        if owner is not None:
            owner.source_open = False
            owner.source_error = error
            owner.wake()

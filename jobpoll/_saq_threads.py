"""`OutcomeThreads`: where a worker runs the calls of a plain (`def`) outcome function, in
threads of jobpoll's own, at most `size` at once, and one call per job id at a time.

A thread cannot be stopped: a call that outlives `outcome_timeout` runs on. So:

- **Not SAQ's pool, nor the loop's.** SAQ's `Worker.stop` shuts its `Worker.pool` down
  waiting for its threads, on the event loop: one call that never returns would freeze the
  worker's loop at its stop. The loop's default executor resolves aiohttp's host names: calls
  blocking its few threads would hold up the polls. Each call here gets a daemon thread of its
  own once one of the `size` places is free (starting a thread costs little beside an outcome
  call), so a call that never returns holds up neither the worker's stop nor its process's exit
  (it ends with the process, as a call in a killed worker does).
- **One call per job id.** SAQ retries an outcome job whose call timed out. While that call
  still runs in this worker, the retry waits for it instead of calling the function again, and
  its end is kept by its own task (`task`), not by the SAQ job that started it: a call that
  returns late is delivered. Another worker does not know of it (see docs/guides/saq.md), but
  a call that waited for a free place asks again once it has one (`run`'s `first`): a call
  another worker made meanwhile may have returned. The return of an `async def` outcome call
  is written down in such a task too (its call runs in its SAQ job, cut at `outcome_timeout`):
  a retry waits for that writing rather than calling again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class NotCalled(Exception):
    """A call not made: `run`'s `first` said no once a place was free."""


class OutcomeThreads:
    """One worker's threads for plain outcome calls, and the task of each job id's call."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size!r}")
        self.size = size
        self._places = asyncio.Semaphore(size)
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._in_threads: set[str] = set()  # the job ids whose call has its thread
        self._waiting: set[str] = set()  # the job ids whose call waits for a place

    def __repr__(self) -> str:
        return f"<OutcomeThreads {len(self._in_threads)} of {self.size} running>"

    def task(self, job_id: str, call: Callable[[], Coroutine[Any, Any, T]]) -> asyncio.Task[T]:
        """The task of `job_id`'s call (or of its return's writing) still running in this
        worker, or a new one of `call()`."""
        task = self._tasks.get(job_id)
        if task is None:
            task = asyncio.create_task(call())
            self._tasks[job_id] = task
            task.add_done_callback(functools.partial(self._ended, job_id))
        return task

    def pending(self, job_id: str) -> asyncio.Task[Any] | None:
        """The task of `job_id`'s call (or of its return's writing) still running here."""
        return self._tasks.get(job_id)

    def _ended(self, job_id: str, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(job_id) is task:
            del self._tasks[job_id]
        if not task.cancelled():
            task.exception()  # kept by the call itself; whoever still awaits it gets it too

    def started(self, job_id: str) -> bool:
        """Whether `job_id`'s call has its thread (else it waits for a free place)."""
        return job_id in self._in_threads

    def waiting(self, job_id: str) -> bool:
        """Whether `job_id`'s call waits for a free place."""
        return job_id in self._waiting

    @property
    def running(self) -> int:
        """How many calls have their thread now."""
        return len(self._in_threads)

    async def run(
        self,
        job_id: str,
        function: Callable[[], T],
        first: Callable[[], Awaitable[bool]] | None = None,
    ) -> T:
        """`function()` (of `job_id`'s outcome) in a thread of its own, once a place is free
        and `first()` (None: none) says it is still to be made, else `NotCalled`; the place
        is free again when the thread ends, whoever waits for it."""
        self._waiting.add(job_id)
        try:
            await self._places.acquire()
        finally:
            self._waiting.discard(job_id)
        try:
            called = first is None or await first()
        except BaseException:
            self._places.release()
            raise
        if not called:
            self._places.release()
            raise NotCalled(job_id)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        context = contextvars.copy_context()

        def ended(value: T | None, error: BaseException | None) -> None:
            self._places.release()
            self._in_threads.discard(job_id)
            if done.done():  # its waiter was cancelled: the worker stopped
                return
            if error is None:
                done.set_result(value)  # type: ignore[arg-type]
            else:
                done.set_exception(error)

        def body() -> None:
            value: T | None = None
            error: BaseException | None = None
            try:
                value = context.run(function)
            except Exception as exc:  # the waiter's to raise
                error = exc
            except BaseException as exc:  # SystemExit in a thread stops no worker
                error = RuntimeError(f"the outcome function raised {type(exc).__name__}")
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(ended, value, error)

        try:
            thread = threading.Thread(target=body, name=f"jobpoll-outcome {job_id}", daemon=True)
            thread.start()
        except BaseException:
            self._places.release()
            raise
        self._in_threads.add(job_id)
        return await done

    def tasks(self) -> list[asyncio.Task[Any]]:
        """The tasks running: calls, or waiting for a place, or writing a return (`task`)."""
        return list(self._tasks.values())

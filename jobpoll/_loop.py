"""A command's event loop: Ctrl-C, SIGTERM and a failed output cancel the command's coroutine,
which cleans up (the summary written last) before the command exits."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable

from jobpoll._exits import EXIT_INTERRUPTED, EXIT_TERMINATED, Failure
from jobpoll._output import Output


class CommandLoop:
    """Runs one command's coroutine in a new event loop (`asyncio.run`), and stops it cleanly."""

    def __init__(self) -> None:
        #: Standard output, whose failure stops the command.
        self.out = Output(sys.stdout, on_failure=self.fail)
        self._failed: Failure | None = None  # the output failed
        self._interrupted: Failure | None = None  # a signal came before the end
        self._ended: int | None = None  # the coroutine's status, once it returned
        self._task: asyncio.Task[int] | None = None

    @property
    def stopped_with(self) -> int:
        """The status of the command once stopped: 130 unless another stop was asked for."""
        reason = self._failed or self._interrupted
        return EXIT_INTERRUPTED if reason is None else reason.exit_code

    def fail(self, failure: Failure) -> None:
        """Stop the command, to exit with `failure`'s status and line however it ends."""
        if self._failed is None:
            self._failed = failure
            self._cancel()

    def run(self, main: Callable[[], Awaitable[int]]) -> int:
        """Run `main()` to its end: its status, or the `Failure` that stopped it raised."""
        try:
            asyncio.run(self._guarded(main))
        except KeyboardInterrupt:  # asyncio's own Ctrl-C: the coroutine was cancelled first
            self._interrupt(Failure("interrupted", EXIT_INTERRUPTED))
        except asyncio.CancelledError:
            if self._failed is None and self._interrupted is None:
                raise
        reason = self._failed or (self._interrupted if self._ended is None else None)
        if reason is not None:
            raise reason
        assert self._ended is not None
        return self._ended

    def _interrupt(self, reason: Failure) -> None:
        if self._interrupted is None and self._ended is None:
            self._interrupted = reason
            self._cancel()

    def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _guarded(self, main: Callable[[], Awaitable[int]]) -> None:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        terminated = Failure("terminated", EXIT_TERMINATED)
        loop.add_signal_handler(signal.SIGTERM, self._interrupt, terminated)
        try:
            self._ended = await main()
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            self._task = None

"""A command's event loop, and how it stops: Ctrl-C and SIGTERM cancel the command's
coroutine, which cleans up (the polls in flight cancelled, the client closed, the summary
written) before the command exits with 130 or 143.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from jobpoll._exits import EXIT_INTERRUPTED, EXIT_TERMINATED, Failure
from jobpoll._output import say

__all__ = ["CommandLoop"]


class CommandLoop:
    """Runs one command's coroutine in a new event loop (`asyncio.run`), and stops it cleanly.

    Args:
        command: the command's name, for the line said when it is stopped
            (`jobpoll wait: interrupted`).
    """

    def __init__(self, command: str) -> None:
        self.command = command
        self._stop: Failure | None = None
        self._task: asyncio.Task[int] | None = None

    @property
    def stopped_with(self) -> int:
        """The status of the command once stopped: 130 unless another stop was asked for."""
        return EXIT_INTERRUPTED if self._stop is None else self._stop.exit_code

    def stop(self, reason: Failure) -> None:
        """Cancel the command's coroutine, to exit with `reason`'s status and line (the
        first reason given wins)."""
        if self._stop is None:
            self._stop = reason
            if self._task is not None:
                self._task.cancel()

    def run(self, main: Callable[[], Awaitable[int]]) -> int:
        """Run `main()` to its end, or until stopped; the command's status."""
        try:
            code = asyncio.run(self._guarded(main))
        except KeyboardInterrupt:
            self.stop(Failure("interrupted", EXIT_INTERRUPTED))
        except asyncio.CancelledError:
            if self._stop is None:
                raise
        if self._stop is None:
            return code
        if str(self._stop):
            say(f"{self.command}: {self._stop}")
        return self._stop.exit_code

    async def _guarded(self, main: Callable[[], Awaitable[int]]) -> int:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        loop.add_signal_handler(signal.SIGTERM, self.stop, Failure("terminated", EXIT_TERMINATED))
        try:
            return await main()
        finally:
            loop.remove_signal_handler(signal.SIGTERM)
            self._task = None

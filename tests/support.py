"""Helpers the tests share: waiting on the fake service's counters, checking for leftovers, and a
service that shows how many requests a client sends at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from jobpoll.testing import FakeJobsService

#: The tasks the in-process loopback servers run on their own: accepting a connection, serving
#: it (aiohttp keeps one per kept-alive connection), and handling one request on it. A client
#: that gives up mid-request (a cancellation, a timeout) closes its connection at once; the
#: server may still be accepting it or starting the request, and ends those tasks a few turns
#: of the loop later. They are the service's, not jobpoll's: nothing of the client's is in them.
SERVER_TASKS = frozenset(
    {
        "BaseSelectorEventLoop._accept_connection2",
        "RequestHandler.start",
        "RequestHandler._handle_request",
    }
)


def no_other_tasks() -> bool:
    """True when no task is left but this test's own and the loopback servers' own tasks."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    return all(getattr(task.get_coro(), "__qualname__", "") in SERVER_TASKS for task in others)


async def until(condition: Callable[[], bool], step: float = 0.001) -> None:
    """Until `condition()` holds (at most 5 s): the service's counters have no events."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(step)


async def until_idle(service: FakeJobsService) -> None:
    """Until the service has no request in progress (its handler is cancelled when the
    client closes the connection, so this proves the client let go of it)."""
    await until(lambda: service.in_flight == 0)


class CrowdService(FakeJobsService):
    """A fake service that holds its first answers until `crowd` requests are in at once.

    So a test sees whether a client sends that many requests at once without racing the
    clock: once the crowd is in, every answer goes out as usual (faults included); a client
    that never gets there has its first answers after `hold` seconds, the others at once, and
    `peak_in_flight` tells.
    """

    def __init__(self, crowd: int, *, hold: float = 5.0, **options: Any) -> None:
        super().__init__(**options)
        self._crowd = crowd
        self._hold = hold
        self._gathered = asyncio.Event()

    async def _answer(self, request: web.Request, job_id: str | None) -> web.StreamResponse:
        if self.in_flight >= self._crowd:
            self._gathered.set()
        try:
            async with asyncio.timeout(self._hold):
                await self._gathered.wait()
        except TimeoutError:
            self._gathered.set()  # the crowd never came: hold nobody any more
        return await super()._answer(request, job_id)

"""Helpers the tests share: waiting on the fake service's counters, and checking for leftovers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from jobpoll.testing import FakeJobsService


def no_other_tasks() -> bool:
    """True when no task is left but this test's own and the in-process fake service's
    connection handlers (aiohttp's server keeps one per kept-alive connection)."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    return all(
        getattr(task.get_coro(), "__qualname__", "") == "RequestHandler.start" for task in others
    )


async def until(condition: Callable[[], bool], step: float = 0.001) -> None:
    """Until `condition()` holds (at most 5 s): the service's counters have no events."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(step)


async def until_idle(service: FakeJobsService) -> None:
    """Until the service has no request in progress (its handler is cancelled when the
    client closes the connection, so this proves the client let go of it)."""
    await until(lambda: service.in_flight == 0)

"""`stop`: how jobpoll ends the tasks it owns, so that a cancellation of the one ending them is
never lost."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any


async def stop(tasks: Collection[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and wait until each has ended (their errors are theirs: not raised).

    Raises:
        asyncio.CancelledError: the caller itself was cancelled meanwhile; raised once the
            tasks have ended (`gather` tells the caller's cancellation from theirs).
    """
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)

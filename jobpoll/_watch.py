"""`jobpoll wait`: the fan-out's changes and results shown through a view, and its status."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from jobpoll._board import SUCCEEDED, TIMED_OUT, Board, outcome_of
from jobpoll._client import JobsClient
from jobpoll._errors import JobPollError
from jobpoll._exits import EXIT_FAILED, EXIT_INTERRUPTED, failure_for
from jobpoll._fanout import JobsWait, wait_for_jobs
from jobpoll._models import Job
from jobpoll._policy import PollPolicy
from jobpoll._view import Summary, View


async def wait_with_view(
    client: JobsClient,
    board: Board,
    policy: PollPolicy,
    view: View,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - the fan-out's own, per job
    fail_fast: bool = False,
    stopped_with: Callable[[], int] = lambda: EXIT_INTERRUPTED,
) -> int:
    """Wait for the board's jobs, showing it; the exit status, or a `Failure` when an error
    about the setup ended the wait. The summary is written last, once the client is closed,
    with that status (`stopped_with()` for a wait cancelled)."""

    def on_update(job: Job) -> None:
        row = board.changed(job)
        if row is not None:
            view.changed(row)

    summary = Summary(EXIT_FAILED)  # until the wait says otherwise
    ticker: asyncio.Task[None] | None = None
    try:
        async with client:
            fanout = wait_for_jobs(
                client, list(board.rows), policy=policy, timeout=timeout, on_update=on_update
            )
            board.fanout = fanout
            view.start()
            ticker = asyncio.create_task(_tick(view))
            summary = await _watch(fanout, board, view, fail_fast=fail_fast)
    except asyncio.CancelledError:
        summary = Summary(stopped_with(), interrupted=True)
        raise
    except JobPollError as exc:
        failure = failure_for(exc, job_failed=board.exit_code() == EXIT_FAILED)
        summary = Summary(failure.exit_code, error=str(failure))
        raise failure from None
    finally:
        # Nothing is awaited from here on, so that no signal can come between the summary
        # and the end: the status the summary says is the command's.
        if ticker is not None:
            ticker.cancel()  # it ends at its next turn, without drawing again
        view.stop(summary)
    return summary.exit_code


async def _watch(fanout: JobsWait, board: Board, view: View, *, fail_fast: bool) -> Summary:
    async with fanout:
        async for result in fanout:
            view.ended(board.ended_with(result))
            if fail_fast and outcome_of(result) not in (SUCCEEDED, TIMED_OUT):
                return Summary(board.exit_code(), stopped_early=True)
    return Summary(board.exit_code())


async def _tick(view: View) -> None:
    while True:
        await asyncio.sleep(view.interval)
        view.tick()

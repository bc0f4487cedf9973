"""The wait of `jobpoll wait` (and the demo): drives the fan-out, tells a view what happens,
and with `--state` keeps the wait in its state file; its end is the command's exit status."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from jobpoll._board import SUCCEEDED, TIMED_OUT, Board, outcome_of
from jobpoll._client import JobsClient
from jobpoll._errors import JobPollError
from jobpoll._exits import EXIT_FAILED, EXIT_INTERRUPTED, Failure, failure_for
from jobpoll._fanout import JobsWait, wait_for_jobs
from jobpoll._models import Job
from jobpoll._policy import PollPolicy
from jobpoll._state_file import StateKeeper
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
    keeper: StateKeeper | None = None,
) -> int:
    """Wait for the board's jobs, showing it; the exit status, or a `Failure` when an error
    about the setup ended the wait. The summary is written last, with that status.

    With `keeper`, the wait goes on from its state file and is saved there, and `timeout`
    bounds this run: the jobs not ended by then stay in the file for the next run rather
    than being reported as timed out."""

    def on_update(job: Job) -> None:
        row = board.changed(job)
        if row is not None:
            view.changed(row)

    summary = Summary(EXIT_FAILED)  # until the wait says otherwise
    ticker: asyncio.Task[None] | None = None
    fanout: JobsWait | None = None
    try:
        async with client:
            if keeper is None:
                fanout = wait_for_jobs(
                    client, list(board.rows), policy=policy, timeout=timeout, on_update=on_update
                )
            else:
                fanout = keeper.start(client, policy, board, on_update)
            board.fanout = fanout
            view.start()
            ticker = asyncio.create_task(_tick(view))
            run_timeout = None if keeper is None else timeout
            summary = await _watch(fanout, board, view, fail_fast, keeper, run_timeout)
    except asyncio.CancelledError:
        summary = Summary(stopped_with(), interrupted=True)
        raise
    except JobPollError as exc:
        failure = failure_for(exc, job_failed=board.exit_code() == EXIT_FAILED)
        summary = Summary(failure.exit_code, error=str(failure))
        raise failure from None
    except Failure as exc:
        summary = Summary(exc.exit_code, error=str(exc))
        raise
    finally:
        # Nothing is awaited from here on, so that no signal can come between the summary
        # and the end: the status the summary says is the command's.
        if ticker is not None:
            ticker.cancel()  # it ends at its next turn, without drawing again
        _stop(view, summary, keeper, fanout)
    return summary.exit_code


def _stop(
    view: View, summary: Summary, keeper: StateKeeper | None, fanout: JobsWait | None
) -> None:
    """Save the wait's state as the run ends (or remove the file), then write the summary;
    a save that fails is what the run ends with, whatever ended it."""
    unsaved = None
    if keeper is not None and fanout is not None:
        try:
            keeper.stop(fanout)
        except Failure as failure:
            unsaved = failure
            summary = Summary(failure.exit_code, summary.interrupted, error=str(failure))
    view.stop(summary)
    if unsaved is not None:
        raise unsaved


async def _watch(
    fanout: JobsWait,
    board: Board,
    view: View,
    fail_fast: bool,
    keeper: StateKeeper | None,
    run_timeout: float | None,
) -> Summary:
    async with fanout:
        try:
            async with asyncio.timeout(run_timeout) as timer:
                async for result in fanout:
                    board.ended_with(result)
                    view.ended(result)
                    if keeper is not None:
                        keeper.reported(fanout)
                    if fail_fast and outcome_of(result) not in (SUCCEEDED, TIMED_OUT):
                        return Summary(board.exit_code(), stopped_early=True)
        except TimeoutError:
            if not timer.expired():
                raise
            return Summary(board.exit_code(timed_out=True))
    return Summary(board.exit_code())


async def _tick(view: View) -> None:
    while True:
        await asyncio.sleep(view.interval)
        view.tick()

"""`jobpoll status`: one poll per job, shown as a table (or JSON lines), and its status."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from rich.table import Table

from jobpoll._client import JobsClient
from jobpoll._errors import JobPollError
from jobpoll._exits import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, failure_for
from jobpoll._models import JobResult
from jobpoll._output import Output, interactive, make_console, plain
from jobpoll._view import describe_error, status_style
from jobpoll._wire import format_timestamp


async def show_status(client: JobsClient, job_ids: list[str], out: Output, *, as_json: bool) -> int:
    """Poll each job once and show the answers: the status, or a `Failure` for an error about
    the setup (a refused key) once each job's line has said it."""
    async with client:
        window = asyncio.Semaphore(client.pool_size)

        async def poll(job_id: str) -> JobResult:
            async with window:
                try:
                    return JobResult(job_id, await client.get_job(job_id))
                except JobPollError as exc:
                    return JobResult(job_id, None, exc)

        results = await asyncio.gather(*(poll(job_id) for job_id in job_ids))
    if as_json:
        for result in results:
            out.write_json({"event": "status", **result.to_dict()})
    else:
        _status_table(results, out)
    return status_code(results)


def status_code(results: Sequence[JobResult]) -> int:
    """1 when a job has failed or could not be read, else 4 when the API kept failing for
    one, else 0; a `Failure` when an error about the setup ended the polls."""
    failed = any(_failed(result) for result in results)
    for result in results:
        if result.error is not None and result.error.stops_all:
            raise failure_for(result.error, job_failed=failed)
    if failed:
        return EXIT_FAILED
    return EXIT_UNREACHABLE if any(result.error for result in results) else EXIT_OK


def _failed(result: JobResult) -> bool:
    error, job = result.error, result.job
    if error is not None and not error.transient and not error.affects_all:
        return True
    return job is not None and job.failed


def _status_table(results: Sequence[JobResult], out: Output) -> None:
    # Off a terminal, rich would fold the table to 80 columns: a line per job reads better.
    terminal = interactive(out)
    console = make_console(out, terminal=terminal, width=None if terminal else 200)
    table = Table(box=None, pad_edge=False, header_style="bold dim")
    table.add_column("job", no_wrap=True, overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("progress", no_wrap=True, justify="right")
    table.add_column("created", no_wrap=True)
    table.add_column("user", overflow="fold")
    for result in results:
        job = result.job
        if job is None:
            table.add_row(plain(result.job_id), plain(describe_error(result), "red"))
        else:
            table.add_row(
                plain(result.job_id),
                plain(job.raw_status, status_style(job)),
                plain(f"{job.progress}%"),
                plain(format_timestamp(job.created_at.replace(microsecond=0))),
                plain(job.user or ""),
            )
    console.print(table)

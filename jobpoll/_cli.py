"""The `jobpoll` command: wait on jobs from a terminal or a script.

Arguments in click, the live view in rich (both in the `cli` extra, imported here only, so
that `import jobpoll` needs neither). Each command returns its exit status; `main` turns
every error into one line on stderr (never a traceback, never the key) and the status the
help lists:

    0    every job succeeded (FINISHED or ARCHIVED)
    1    some job ended unsuccessfully (or a job's status could not be read)
    2    usage or configuration error: no key, a bad URL, a bad id, a bad option
    3    the --timeout passed before every job ended
    4    the API refused the key, or could not be reached (or kept failing)
    130  interrupted (Ctrl-C), after a clean stop (143 for SIGTERM)

The command owns its event loop (`asyncio.run`); Ctrl-C cancels the wait, which cancels the
polls in flight and closes the client before the summary and the exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from jobpoll._client import JobsClient
from jobpoll._config import API_KEY_ENV, BASE_URL_ENV
from jobpoll._config import check_api_key as _check_api_key
from jobpoll._errors import (
    ConfigurationError,
    Forbidden,
    InvalidJobId,
    JobPollError,
    TransportError,
    Unauthorized,
)
from jobpoll._fanout import wait_for_jobs
from jobpoll._ids import check_job_id
from jobpoll._models import Job, JobResult
from jobpoll._policy import PollPolicy
from jobpoll._version import __version__
from jobpoll._view import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    Board,
    JsonLines,
    LiveView,
    Row,
    Summary,
    TerminalSummary,
    View,
    describe_error,
    outcome_of,
)
from jobpoll._wire import format_timestamp

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM

EXIT_STATUS_HELP = """\b
Exit status:
  0    every job succeeded (FINISHED, or ARCHIVED)
  1    some job ended unsuccessfully (FAILED, DIED, COULDNT_START,
       CANCELED, not found, stalled, a wrong answer)
  2    usage or configuration error: no key, a bad URL, a bad id
  3    the --timeout passed before every job ended
  4    the API refused the key, or could not be reached
  130  interrupted (Ctrl-C), after a clean stop
"""

logger = logging.getLogger("jobpoll")


class _Failure(Exception):
    """One line for stderr, and the exit status to go with it."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# Parameters --------------------------------------------------------------------------------


def _seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A click callback: a positive, finite number of seconds (click's `FloatRange` lets NaN
    and infinity through)."""
    if value is not None and not 0 < value < math.inf:
        raise click.BadParameter(f"{value!r} is not a positive number of seconds")
    return value


_F = TypeVar("_F", bound=Callable[..., Any])


def _names_failures(command: Callable[..., int]) -> Callable[..., int]:
    """Prefix a command's failures with its name (`jobpoll wait: no API key: ...`)."""

    @functools.wraps(command)
    def named(*args: Any, **kwargs: Any) -> int:
        try:
            return command(*args, **kwargs)
        except _Failure as exc:
            path = click.get_current_context().command_path
            raise _Failure(f"{path}: {exc}", exc.exit_code) from None

    return named


def _connection_options(command: _F) -> _F:
    """--base-url, --api-key-file and --verbose, shared by the commands that talk to the API."""
    for option in reversed(
        [
            click.option(
                "--base-url",
                metavar="URL",
                default=None,
                help=f"The API's base URL [env: {BASE_URL_ENV}; default: CDQ's production URL].",
            ),
            click.option(
                "--api-key-file",
                metavar="FILE",
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                help=f"Read the API key from FILE (its first line) [default: the {API_KEY_ENV}"
                " environment variable]. The key is never taken as an argument, which other"
                " users of the machine could see.",
            ),
            click.option(
                "-v",
                "--verbose",
                count=True,
                help="Log each failure ridden out on stderr (-v), and each poll (-vv).",
            ),
        ]
    ):
        command = option(command)
    return command


def _ids_options(command: _F) -> _F:
    command = click.option(
        "-f",
        "--file",
        "files",
        metavar="FILE",
        multiple=True,
        type=click.Path(dir_okay=False, allow_dash=True, path_type=str),
        help="Read job ids from FILE, one per line ('-': standard input); blank lines and"
        " lines starting with # are skipped. May be repeated.",
    )(command)
    return click.argument("ids", nargs=-1, metavar="[ID]... | -")(command)


# The group ---------------------------------------------------------------------------------


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_STATUS_HELP,
)
@click.version_option(__version__, "-V", "--version", prog_name="jobpoll")
def cli() -> None:
    """Wait on CDQ Bankaccount Data API jobs: live progress at a terminal, JSON lines for
    scripts.

    The API key comes from the CDQ_API_KEY environment variable (or --api-key-file), the base
    URL from --base-url or CDQ_BASE_URL. Try it without either: jobpoll demo.
    """


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Run the command line and exit with its status."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command line; the exit status. Every error is one line on stderr."""
    try:
        code = cli.main(args=argv, prog_name="jobpoll", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else str(exc), err=True)
        return EXIT_USAGE
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "jobpoll"
        hint = f" (see: {where} --help)" if exc.ctx else ""
        _say(f"{where}: {_one_line(exc.format_message())}{hint}")
        return exc.exit_code
    except click.ClickException as exc:
        _say(f"jobpoll: {_one_line(exc.format_message())}")
        return exc.exit_code
    except click.exceptions.Abort:  # Ctrl-C while click read something
        _say("jobpoll: interrupted")
        return EXIT_INTERRUPTED
    except _Failure as exc:
        _say(str(exc))
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (`jobpoll wait ... | head`): nothing more can be said.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    return code if isinstance(code, int) else EXIT_OK


def _say(line: str) -> None:
    with contextlib.suppress(OSError):
        click.echo(line, err=True)


def _one_line(text: str) -> str:
    return " ".join(text.split())


#: The status of a command cancelled by a signal: 130 for Ctrl-C, 143 for SIGTERM (set
#: before the cancellation, so that the summary says it too).
_stopped_with = [EXIT_INTERRUPTED]


def _run_loop(command: str, main: Callable[[], Awaitable[int]]) -> int:
    """Run `main` in a new event loop: Ctrl-C (or SIGTERM) cancels it, and once it has
    stopped cleanly, the status is 130 (143)."""
    terminated = False
    _stopped_with[0] = EXIT_INTERRUPTED

    async def guarded() -> int:
        nonlocal terminated
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_sigterm() -> None:
            nonlocal terminated
            terminated = True
            _stopped_with[0] = EXIT_TERMINATED
            task.cancel()

        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
        try:
            return await main()
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        return asyncio.run(guarded())
    except KeyboardInterrupt:
        _say(f"{command}: interrupted")
        return EXIT_INTERRUPTED
    except asyncio.CancelledError:
        if not terminated:
            raise
        _say(f"{command}: terminated")
        return EXIT_TERMINATED


def _configure_logging(verbose: int) -> None:
    """Send jobpoll's log records to stderr with -v; otherwise nowhere (Python's last-resort
    handler would print its warnings, a second line beside the error the command reports)."""
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)  # run() called again in the same process
    handler = _StderrHandler(shown=verbose > 0)
    handler.setFormatter(logging.Formatter("jobpoll: %(levelname)s: %(message)s"))
    logger.addHandler(handler)
    if verbose:
        logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


class _StderrHandler(logging.Handler):
    """Writes to whatever `sys.stderr` is at the time of each record (the live view's proxy
    while it runs), or, when not `shown`, nowhere."""

    def __init__(self, *, shown: bool) -> None:
        super().__init__()
        self.shown = shown

    def emit(self, record: logging.LogRecord) -> None:
        if self.shown:
            with contextlib.suppress(Exception):
                sys.stderr.write(self.format(record) + "\n")
                sys.stderr.flush()


def _make_client(base_url: str | None, api_key_file: Path | None) -> JobsClient:
    """The client the options and environment describe.

    Raises:
        _Failure: no key, a key or URL that cannot be used (status 2), said with where it
            came from and never quoting the key.
    """
    if api_key_file is not None:
        try:
            text = api_key_file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise _Failure(f"--api-key-file {api_key_file}: cannot read it ({reason})") from None
        lines = text.strip().splitlines()
        if not lines:
            raise _Failure(f"--api-key-file {api_key_file}: the file is empty")
        key, source = lines[0].strip(), f"--api-key-file {api_key_file}"
    else:
        env_key = os.environ.get(API_KEY_ENV)
        if env_key is None:
            raise _Failure(f"no API key: set {API_KEY_ENV}, or pass --api-key-file FILE")
        key, source = env_key, API_KEY_ENV
    try:
        _check_api_key(key)
    except ConfigurationError as exc:
        raise _Failure(f"{source}: {exc}") from None
    try:
        return JobsClient(key, base_url=base_url)
    except ConfigurationError as exc:
        raise _Failure(f"--base-url: {exc}" if base_url is not None else str(exc)) from None


def _read_ids(arguments: Sequence[str], files: Sequence[str]) -> list[str]:
    """The ids from the arguments (`-`: standard input) and files, in that order, each
    checked (`InvalidJobId` as a failure naming where it was: argument 3, line 7 of FILE).

    Each id is checked as it is read, and where it came from is said only for one that is
    wrong: a file of a million ids costs the ids, not a description of each one's place.
    """
    ids: list[str] = []
    sources = [("argument", value) for value in arguments] + [("file", name) for name in files]
    for position, (kind, value) in enumerate(sources, 1):
        if kind == "argument" and value != "-":
            try:
                ids.append(check_job_id(value))
            except InvalidJobId as exc:
                raise _Failure(f"argument {position}: {exc}") from None
            continue
        name = "standard input" if value == "-" else value
        try:
            raw = sys.stdin.buffer.read() if value == "-" else Path(value).read_bytes()
            text = raw.decode("utf-8-sig")
        except OSError as exc:
            raise _Failure(f"cannot read ids from {name} ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise _Failure(f"cannot read ids from {name}: not UTF-8 text") from None
        del raw
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if stripped and not stripped.startswith("#"):
                try:
                    ids.append(check_job_id(stripped))
                except InvalidJobId as exc:
                    raise _Failure(f"line {number} of {name}: {exc}") from None
    if not ids:
        raise _Failure("no job ids given: pass them as arguments, with -f FILE, or - for stdin")
    return list(dict.fromkeys(ids))


def _setup_failure(error: JobPollError) -> _Failure:
    """The failure for an error about the setup that ended a whole wait: a configuration
    error is 2; a refused key or an API never reached, 4."""
    if isinstance(error, ConfigurationError):
        return _Failure(str(error), EXIT_USAGE)
    if isinstance(error, (Unauthorized, Forbidden)):
        return _Failure(f"the API refused the key: {error}", EXIT_UNREACHABLE)
    if isinstance(error, TransportError):
        return _Failure(f"cannot reach the API: {error}", EXIT_UNREACHABLE)
    return _Failure(str(error), EXIT_FAILED)


def _interactive(stream: Any) -> bool:
    """A terminal that can take a live view (not a pipe, a file, or TERM=dumb)."""
    try:
        is_tty = bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
    return is_tty and os.environ.get("TERM", "").lower() not in ("dumb", "unknown")


# status ------------------------------------------------------------------------------------


@cli.command(epilog=EXIT_STATUS_HELP)
@_ids_options
@click.option("--json", "as_json", is_flag=True, help="One JSON line per job instead of a table.")
@_connection_options
@_names_failures
def status(
    ids: tuple[str, ...],
    files: tuple[str, ...],
    as_json: bool,
    base_url: str | None,
    api_key_file: Path | None,
    verbose: int,
) -> int:
    """Show each job's status now: one poll each, a table (or JSON lines).

    The status is 0 when every job was read and none has failed, 1 when one has failed or
    could not be read (not found, a wrong answer), 4 when the API could not be reached.
    """
    _configure_logging(verbose)
    job_ids = _read_ids(ids, files)
    client = _make_client(base_url, api_key_file)
    return _run_loop("jobpoll status", lambda: _status(client, job_ids, as_json))


async def _status(client: JobsClient, job_ids: list[str], as_json: bool) -> int:
    async with client:
        window = asyncio.Semaphore(client.pool_size)

        async def poll(job_id: str) -> JobResult:
            async with window:
                try:
                    return JobResult(job_id, await client.get_job(job_id))
                except JobPollError as exc:
                    return JobResult(job_id, None, exc)

        results = await asyncio.gather(*(poll(job_id) for job_id in job_ids))
    failed = any(
        (r.error is not None and not r.error.transient and not r.error.affects_all)
        or (r.job is not None and r.job.failed)
        for r in results
    )
    for result in results:
        error = result.error
        if error is not None and error.stops_all:
            failure = _setup_failure(error)
            if failure.exit_code == EXIT_UNREACHABLE and failed:
                failure.exit_code = EXIT_FAILED  # a job known to have failed decides
            raise failure
    if as_json:
        for result in results:
            line = {"event": "status"}
            line.update(result.to_dict())
            _json_line(line)
    else:
        _status_table(results)
    code = EXIT_OK
    for result in results:
        if result.error is not None and result.error.transient:
            code = max(code, EXIT_UNREACHABLE)
        elif result.error is not None or (result.job is not None and result.job.failed):
            return EXIT_FAILED
    return code


def _json_line(line: dict[str, Any]) -> None:
    import json

    sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _status_table(results: Sequence[JobResult]) -> None:
    # Off a terminal, rich would fold the table to 80 columns: a line per job reads better.
    width = None if _interactive(sys.stdout) else 200
    console = Console(highlight=False, soft_wrap=False, width=width)
    table = Table(box=None, pad_edge=False, header_style="bold dim")
    table.add_column("job", no_wrap=True, overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("progress", no_wrap=True, justify="right")
    table.add_column("created", no_wrap=True)
    table.add_column("user", overflow="fold")
    for result in results:
        job: Job | None = result.job
        if job is None:
            assert result.error is not None
            table.add_row(result.job_id, Text(describe_error(result.error), style="red"))
            continue
        style = "green" if job.succeeded else "red" if job.failed else "cyan"
        table.add_row(
            result.job_id,
            Text(job.raw_status, style=style),
            f"{job.progress}%",
            format_timestamp(job.created_at.replace(microsecond=0)),
            job.user or "",
        )
    console.print(table)


# wait --------------------------------------------------------------------------------------


@cli.command(epilog=EXIT_STATUS_HELP)
@_ids_options
@click.option(
    "--timeout",
    type=float,
    callback=_seconds,
    metavar="SECONDS",
    default=None,
    help="Stop waiting for jobs not ended after this many seconds (status 3).",
)
@click.option(
    "--fail-fast", is_flag=True, help="Stop at the first job that ends unsuccessfully (status 1)."
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress: only the outcomes (JSON lines), or at a terminal only the summary.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="JSON lines even at a terminal (the default off one)."
)
@click.option(
    "--heartbeat",
    type=float,
    callback=_seconds,
    metavar="SECONDS",
    default=30.0,
    show_default=True,
    help="With JSON lines, a heartbeat line after this many seconds without a line.",
)
@click.option(
    "--max-interval",
    type=float,
    callback=_seconds,
    metavar="SECONDS",
    default=30.0,
    show_default=True,
    help="The longest pause between two polls of a job whose progress tells nothing.",
)
@click.option(
    "--connect-grace",
    type=float,
    callback=_seconds,
    metavar="SECONDS",
    default=10.0,
    show_default=True,
    help="How long to retry while nothing answers at the base URL before giving up (status 4).",
)
@_connection_options
@_names_failures
def wait(
    ids: tuple[str, ...],
    files: tuple[str, ...],
    timeout: float | None,
    fail_fast: bool,
    quiet: bool,
    as_json: bool,
    heartbeat: float,
    max_interval: float,
    connect_grace: float,
    base_url: str | None,
    api_key_file: Path | None,
    verbose: int,
) -> int:
    """Wait for jobs to end: ids as arguments, from files (-f), or from stdin (-).

    At a terminal, a live view: a row per job for a few jobs (status, progress, elapsed,
    time left at the pace the job has shown), one bar for the whole and the latest changes
    for many; then a summary. Off a terminal, or with --json: one JSON line per change
    (event "change") and per job's end (event "outcome"), a "heartbeat" line when nothing
    was written for --heartbeat seconds, and a "summary" line last.
    """
    _configure_logging(verbose)
    job_ids = _read_ids(ids, files)
    client = _make_client(base_url, api_key_file)
    try:
        policy = PollPolicy(
            initial=min(2.0, max_interval),
            max_interval=max_interval,
            first_contact_grace=connect_grace,
        )
    except ConfigurationError as exc:
        raise _Failure(str(exc)) from None
    jobs = "job" if len(job_ids) == 1 else "jobs"
    title = f"Waiting for {len(job_ids):,} {jobs} at {client.base_url}"

    def view(board: Board) -> View:
        return _make_view(board, as_json=as_json, quiet=quiet, heartbeat=heartbeat, title=title)

    return _run_loop(
        "jobpoll wait",
        lambda: wait_with_view(client, job_ids, policy, view, timeout=timeout, fail_fast=fail_fast),
    )


def _make_view(board: Board, *, as_json: bool, quiet: bool, heartbeat: float, title: str) -> View:
    if as_json or not _interactive(sys.stdout):
        return JsonLines(board, sys.stdout, heartbeat=heartbeat, quiet=quiet)
    console = Console(force_terminal=True, highlight=False)
    if quiet:
        return TerminalSummary(board, console)
    return LiveView(board, console, title=title)


async def wait_with_view(
    client: JobsClient,
    job_ids: list[str],
    policy: PollPolicy,
    make_view: Callable[[Board], View],
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - the fan-out's own, per job
    fail_fast: bool = False,
) -> int:
    """Wait for the jobs through `wait_for_jobs`, showing it; the exit status.

    Raises:
        _Failure: an error about the setup ended the wait (after the view's summary).
    """
    board = Board(job_ids, clock=policy.clock)
    view = make_view(board)

    def on_update(job: Job) -> None:
        row: Row | None = board.changed(job)
        if row is not None:
            view.changed(row)

    interrupted = stopped = False
    failure: _Failure | None = None
    code = EXIT_OK
    async with client:
        fanout = wait_for_jobs(client, job_ids, policy=policy, timeout=timeout, on_update=on_update)
        board.fanout = fanout
        view.start()
        ticker = asyncio.create_task(_tick(view))
        try:
            async with fanout:
                async for result in fanout:
                    view.ended(board.ended_with(result))
                    if fail_fast and outcome_of(result) not in ("succeeded", "timed out"):
                        stopped = True
                        break
            code = board.exit_code()
        except asyncio.CancelledError:
            interrupted, code = True, _stopped_with[0]
            raise
        except JobPollError as exc:
            failure = _setup_failure(exc)
            if failure.exit_code == EXIT_UNREACHABLE and board.exit_code() == EXIT_FAILED:
                failure.exit_code = EXIT_FAILED  # a job known to have failed decides
            code = failure.exit_code
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            error = None if failure is None else str(failure)
            view.stop(Summary(code, interrupted=interrupted, stopped_early=stopped, error=error))
    if failure is not None:
        raise failure
    return code


async def _tick(view: View) -> None:
    while True:
        await asyncio.sleep(view.interval)
        view.tick()


# demo --------------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--speed",
    type=click.FloatRange(0.5, 20),
    default=1.0,
    show_default=True,
    help="Run the jobs this many times faster.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines even at a terminal.")
@_names_failures
def demo(speed: float, as_json: bool) -> int:
    """Wait on a dozen jobs of an embedded fake service: no key, no network.

    The jobs run for 2 to 14 seconds, with different shapes of progress; one fails, one
    dies, one is archived, and the service answers 503 for a while (ridden out). The same
    view as `jobpoll wait`, then whether the demo ran as designed (status 0) or not (1).
    """
    _configure_logging(0)
    from jobpoll._demo import run_demo

    def view(board: Board, title: str) -> View:
        return _make_view(board, as_json=as_json, quiet=False, heartbeat=5.0, title=title)

    return _run_loop("jobpoll demo", lambda: run_demo(speed, view, wait_with_view))


# fake-server -------------------------------------------------------------------------------


@cli.command("fake-server")
@click.option("--port", type=int, default=None, help="The loopback port [default: any free one].")
@click.option(
    "--api-key", metavar="KEY", default=None, help="The key it accepts [default: a random one]."
)
@click.option(
    "--latency",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Wait this long before each answer, as over a network [default: 0].",
)
@click.option("--seed", type=int, default=None, help="Seed of the random fault mix [default: 0].")
@click.option(
    "--config",
    "config_file",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Jobs, faults and the options above from a JSON or TOML (.toml) file.",
)
@click.option(
    "--job",
    "job_specs",
    metavar="PATTERN:KEY=VALUE,...",
    multiple=True,
    help="What ids matching PATTERN become: duration=SECONDS or LOW..HIGH, queued=SECONDS,"
    " shape=linear|ease-in|ease-out|none|steps-N, outcome=FINISHED|FAILED|DIED|COULDNT_START"
    "|CANCELED|ARCHIVED, reach=PERCENT (where it ends), share=FRACTION (of the matching ids),"
    " progress_as_string, missing (a 404). May be repeated; the first match wins.",
)
@click.option(
    "--fault",
    "fault_specs",
    metavar="KIND:KEY=VALUE,...",
    multiple=True,
    help="Answer some requests with a fault. KIND: an HTTP status (400-599), drop, cut, slow,"
    " html, truncated. Which requests: share=FRACTION, times=N, or at=SECONDS,for=SECONDS;"
    " also match=PATTERN, retry_after=SECONDS (a status), seconds=SECONDS (slow).",
)
@_names_failures
def fake_server(
    port: int | None,
    api_key: str | None,
    latency: float | None,
    seed: int | None,
    config_file: Path | None,
    job_specs: tuple[str, ...],
    fault_specs: tuple[str, ...],
) -> int:
    """Serve the fake job service on loopback until Ctrl-C, for your integration tests.

    It prints one JSON line when it listens: {"base_url": "http://127.0.0.1:PORT/bankaccount-
    data/rest", "api_key": "..."} (send the key in the X-API-KEY header), and one of request
    counters when it stops. An id becomes a job at its first request, after the first --job
    (then --config) rule that matches it, else one that runs 10 s and finishes.

    \b
    Example:
      jobpoll fake-server --job 'fail-*:duration=5,outcome=FAILED,reach=40' \\
          --job '*:duration=5..30,shape=ease-out' --fault '503:share=0.05,retry_after=1'

    The status is 0 once stopped, 2 for a bad option or file, 1 when it cannot listen.
    """
    from jobpoll.testing._scenario import (
        ScenarioError,
        ScriptedService,
        build_scenario,
        fault_spec,
        job_spec,
        load_scenario_file,
        serve_until_stopped,
    )

    try:
        data = load_scenario_file(config_file) if config_file is not None else None
        scenario = build_scenario(
            data,
            source=str(config_file),
            jobs=[(text, job_spec(text)) for text in job_specs],
            faults=[(text, fault_spec(text)) for text in fault_specs],
            port=port,
            api_key=api_key,
            latency=latency,
            seed=seed,
        )
    except ScenarioError as exc:
        raise _Failure(str(exc)) from None
    service = ScriptedService(scenario)
    if _interactive(sys.stderr):
        _say("jobpoll fake-server: serving on loopback; Ctrl-C stops it")
    try:
        asyncio.run(serve_until_stopped(service))
    except OSError as exc:
        raise _Failure(
            f"cannot listen on 127.0.0.1:{scenario.port}"
            f" ({os.strerror(exc.errno) if exc.errno else exc})",
            EXIT_FAILED,
        ) from None
    return EXIT_OK

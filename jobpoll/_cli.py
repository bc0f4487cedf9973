"""The `jobpoll` command: each command returns its exit status (`jobpoll._exits`), and `run`
turns every error into one line on stderr, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from jobpoll._board import Board
from jobpoll._errors import ConfigurationError
from jobpoll._exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, Failure, exit_status_help
from jobpoll._loop import CommandLoop
from jobpoll._options import (
    CONNECTION_OPTIONS,
    IDS_OPTIONS,
    make_client,
    names_failures,
    read_ids,
    seconds_option,
    with_options,
)
from jobpoll._output import Output, configure_logging, interactive, progress_output, say
from jobpoll._policy import PollPolicy
from jobpoll._state_file import StateKeeper, read_state
from jobpoll._status import show_status
from jobpoll._version import __version__
from jobpoll._view import make_view
from jobpoll._wait_command import wait_with_view


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=exit_status_help(),
)
@click.version_option(__version__, "-V", "--version", prog_name="jobpoll")
def cli() -> None:
    """Wait on CDQ Bankaccount Data API jobs: live progress at a terminal, JSON lines for
    scripts.

    The API key comes from the CDQ_API_KEY environment variable (or --api-key-file), the base
    URL from --base-url or CDQ_BASE_URL. Try it without either: jobpoll demo.
    """


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
        say(f"{where}: {_one_line(exc.format_message())}{hint}")
        return exc.exit_code
    except click.ClickException as exc:
        say(f"jobpoll: {_one_line(exc.format_message())}")
        return exc.exit_code
    except click.exceptions.Abort:  # Ctrl-C while click read something
        say("jobpoll: interrupted")
        return EXIT_INTERRUPTED
    except Failure as exc:
        if str(exc):
            say(str(exc))
        return exc.exit_code
    return code if isinstance(code, int) else EXIT_OK


def _one_line(text: str) -> str:
    return " ".join(text.split())


@cli.command(epilog=exit_status_help("status"))
@with_options(IDS_OPTIONS)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per job instead of a table.")
@with_options(CONNECTION_OPTIONS)
@names_failures
def status(
    ids: tuple[str, ...],
    files: tuple[str, ...],
    as_json: bool,
    base_url: str | None,
    api_key_file: Path | None,
    max_rate: float | None,
) -> int:
    """Show each job's status now: one poll each, a table (or JSON lines)."""
    job_ids = read_ids(ids, files)
    client = make_client(base_url, api_key_file, max_rate)
    loop = CommandLoop()
    return loop.run(lambda: show_status(client, job_ids, loop.out, as_json=as_json))


@cli.command(epilog=exit_status_help())
@with_options(IDS_OPTIONS)
@seconds_option(
    "--timeout", None, "Stop waiting for jobs not ended after this many seconds (status 3)."
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
@seconds_option(
    "--heartbeat", 30.0, "With JSON lines, a heartbeat line after this many seconds without a line."
)
@seconds_option(
    "--max-interval",
    30.0,
    "The longest pause between two polls of a job whose progress tells nothing.",
)
@seconds_option(
    "--connect-grace",
    10.0,
    "How long to retry while nothing answers at the base URL before giving up (status 4).",
)
@click.option(
    "--state",
    "state_file",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Keep the wait in FILE (now and then, and when stopped: Ctrl-C, SIGTERM, --timeout),"
    " and go on from it when FILE exists: with the same ids, or none. Each job is reported"
    " by one run only; FILE is removed once every job has ended. --timeout then bounds each"
    " run, and the jobs not ended stay in FILE.",
)
@with_options(CONNECTION_OPTIONS)
@names_failures
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
    state_file: Path | None,
    base_url: str | None,
    api_key_file: Path | None,
    max_rate: float | None,
) -> int:
    """Wait for jobs to end: ids as arguments, from files (-f), or from stdin (-).

    At a terminal, a live view: a row per job for a few jobs (status, progress, elapsed,
    time left at the pace the job has shown), one bar for the whole and the latest changes
    for many; then a summary. Off a terminal, or with --json: one JSON line per change
    (event "change") and per job's end (event "outcome"), a "heartbeat" line when nothing
    was written for --heartbeat seconds, and a "summary" line last; with --state, each
    line's "run" says which run of the wait wrote it. With the output sent to a file at a
    terminal, the live view goes to stderr.
    """
    loop = CommandLoop()
    job_ids, keeper = _ids_and_state(ids, files, state_file, loop.out)
    client = make_client(base_url, api_key_file, max_rate)
    try:
        policy = PollPolicy(
            initial=min(2.0, max_interval),
            max_interval=max_interval,
            first_contact_grace=connect_grace,
        )
    except ConfigurationError as exc:
        raise Failure(str(exc)) from None
    board = Board(job_ids, clock=policy.clock, earlier=None if keeper is None else keeper.earlier)
    view = make_view(
        loop.out,
        board,
        as_json=as_json,
        quiet=quiet,
        heartbeat=heartbeat,
        title=_title(job_ids, client.base_url, keeper),
        run=None if keeper is None else keeper.run,
        progress=progress_output(loop.out),
    )
    return loop.run(
        lambda: wait_with_view(
            client,
            board,
            policy,
            view,
            timeout=timeout,
            fail_fast=fail_fast,
            stopped_with=lambda: loop.stopped_with,
            keeper=keeper,
        )
    )


def _ids_and_state(
    ids: tuple[str, ...], files: tuple[str, ...], state_file: Path | None, out: Output
) -> tuple[list[str], StateKeeper | None]:
    """The ids this run waits for, and the keeper of its state file (with --state)."""
    if state_file is None:
        return read_ids(ids, files), None
    saved = read_state(state_file)
    keeper = StateKeeper(state_file, saved, read_ids(ids, files, required=saved is None), out=out)
    return keeper.pending, keeper


def _title(job_ids: list[str], base_url: str, keeper: StateKeeper | None) -> str:
    jobs = "job" if len(job_ids) == 1 else "jobs"
    title = f"Waiting for {len(job_ids):,} {jobs} at {base_url}"
    if keeper is None or keeper.run == 1:
        return title
    return (
        f"{title} (run {keeper.run}: {keeper.reported_before:,} of {keeper.total:,} ended before)"
    )


@cli.command()
@click.option(
    "--speed",
    type=click.FloatRange(0.5, 20),
    default=1.0,
    show_default=True,
    help="Run the jobs this many times faster.",
)
@click.option("--json", "as_json", is_flag=True, help="JSON lines even at a terminal.")
@names_failures
def demo(speed: float, as_json: bool) -> int:
    """Wait on a dozen jobs of an embedded fake service: no key, no network.

    The jobs run for 2 to 14 seconds, with different shapes of progress; one fails, one
    dies, one is archived, and the service answers 503 for a while (ridden out). The same
    view as `jobpoll wait`, then whether the demo ran as designed (status 0) or not (1).
    """
    configure_logging(0)
    # Imported here: the fake service (aiohttp.web) is not loaded for the other commands.
    from jobpoll._demo import run_demo

    loop = CommandLoop()
    return loop.run(
        lambda: run_demo(speed, loop.out, as_json=as_json, stopped_with=lambda: loop.stopped_with)
    )


@cli.command(
    epilog="\b\nExit status:\n  0    the queue was read\n  2    usage error: no or a bad"
    " REDIS_URL, or the saq extra is missing\n  4    Redis could not be read\n"
)
@click.argument("redis_url", metavar="REDIS_URL", envvar="REDIS_URL")
@click.option("--queue", "queue_name", required=True, metavar="NAME", help="The SAQ queue's name.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
@names_failures
def queue(redis_url: str, queue_name: str, as_json: bool) -> int:
    """Show the waits of a SAQ queue of jobpoll.saq, reading only: how many are live (due,
    scheduled, in flight, stuck, lost), the outcomes delivered and not, the oldest wait's
    age, and the rate the fleet holds to.

    REDIS_URL (redis://, rediss:// or unix://) may come from the environment variable of
    that name instead, which keeps a password out of the process list.
    """
    try:
        # Imported here: the saq extra is needed by this command only.
        from jobpoll._queue_view import show_queue
    except ImportError as exc:
        if str(exc.name).partition(".")[0] not in ("saq", "redis"):
            raise
        missing = f"needs the saq extra ({exc.name} is missing): pip install 'jobpoll[saq]'"
        raise Failure(missing) from None
    loop = CommandLoop()
    return loop.run(lambda: show_queue(redis_url, queue_name, loop.out, as_json=as_json))


@cli.command("fake-server")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="The loopback port [default: any free one].",
)
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
@click.option(
    "--seed",
    # Within 2**53, as a scenario file's seed, which JSON may hold as a float, is exact.
    type=click.IntRange(-(2**53), 2**53),
    default=None,
    help="Seed of the random fault mix [default: 0].",
)
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
@click.option(
    "--rate-limit",
    "rate_limit_spec",
    metavar="RATE[:KEY=VALUE,...]",
    default=None,
    help="A gateway's token bucket in front of it: RATE requests a second; burst=N (1),"
    " retry_after=SECONDS|none (1), status=STATUS (429) of what goes over it.",
)
@names_failures
def fake_server(
    port: int | None,
    api_key: str | None,
    latency: float | None,
    seed: int | None,
    config_file: Path | None,
    job_specs: tuple[str, ...],
    fault_specs: tuple[str, ...],
    rate_limit_spec: str | None,
) -> int:
    """Serve the fake job service on loopback until Ctrl-C, for your integration tests.

    It prints one JSON line when it listens: {"base_url": "http://127.0.0.1:PORT/bankaccount-
    data/rest", "api_key": "..."} (send the key in the X-API-KEY header), and one of request
    counters when it stops. An id becomes a job at its first request, after the first --job
    (then --config) rule that matches it; an id no rule matches is a 404, as the real service
    answers for an id it does not know. End with --job '*' to make any id a job of 10 s.

    \b
    Example:
      jobpoll fake-server --job 'fail-*:duration=5,outcome=FAILED,reach=40' \\
          --job '*:duration=5..30,shape=ease-out' --fault '503:share=0.05,retry_after=1'
      jobpoll fake-server --job '*' --rate-limit 50:burst=20

    The status is 0 once stopped, 2 for a bad option or file, 1 when it cannot listen.
    """
    from jobpoll.testing import _scenario as scenarios
    from jobpoll.testing._service import serve

    try:
        jobs = [(text, scenarios.job_spec(text)) for text in job_specs]
        faults = [(text, scenarios.fault_spec(text)) for text in fault_specs]
        limit = None
        if rate_limit_spec is not None:
            limit = (rate_limit_spec, scenarios.rate_limit_spec(rate_limit_spec))
        scenario = scenarios.build_scenario(
            None if config_file is None else scenarios.load_scenario_file(config_file),
            source=str(config_file),
            jobs=jobs,
            faults=faults,
            rate_limit=limit,
            port=port,
            api_key=api_key,
            latency=latency,
            seed=seed,
        )
    except scenarios.ScenarioError as exc:
        raise Failure(str(exc)) from None
    if interactive(sys.stderr):
        say("jobpoll fake-server: serving on loopback; Ctrl-C stops it")
    serve(scenario)
    return EXIT_OK

"""`jobpoll fake-server`: the fake job service in the foreground, its jobs and faults scripted
by options or a file (`jobpoll.testing._scenario`), for integration tests in any language."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from jobpoll._exits import EXIT_FAILED, EXIT_OK, Failure, write_failure
from jobpoll._options import names_failures, with_options
from jobpoll._output import interactive, say

if TYPE_CHECKING:
    from jobpoll.testing._rules import Scenario

__all__ = ["fake_server"]


#: The service, its jobs and its faults.
_OPTIONS = (
    click.option(
        "--port",
        type=click.IntRange(0, 65535),
        default=None,
        help="The loopback port [default: any free one].",
    ),
    click.option(
        "--api-key", metavar="KEY", default=None, help="The key it accepts [default: a random one]."
    ),
    click.option(
        "--latency",
        type=float,
        default=None,
        metavar="SECONDS",
        help="Wait this long before each answer, as over a network [default: 0].",
    ),
    click.option(
        "--seed",
        # The scenario holds the seed exactly up to 2**53 (it reads numbers as floats).
        type=click.IntRange(-(2**53), 2**53),
        default=None,
        help="Seed of the random fault mix [default: 0].",
    ),
    click.option(
        "--config",
        "config_file",
        metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Jobs, faults and the options above from a JSON or TOML (.toml) file.",
    ),
    click.option(
        "--job",
        "job_specs",
        metavar="PATTERN:KEY=VALUE,...",
        multiple=True,
        help="What ids matching PATTERN become: duration=SECONDS or LOW..HIGH, queued=SECONDS,"
        " shape=linear|ease-in|ease-out|none|steps-N, outcome=FINISHED|FAILED|DIED|COULDNT_START"
        "|CANCELED|ARCHIVED, reach=PERCENT (where it ends), share=FRACTION (of the matching ids),"
        " progress_as_string, missing (a 404). May be repeated; the first match wins.",
    ),
    click.option(
        "--fault",
        "fault_specs",
        metavar="KIND:KEY=VALUE,...",
        multiple=True,
        help="Answer some requests with a fault. KIND: an HTTP status (400-599), drop, cut, slow,"
        " html, truncated. Which requests: share=FRACTION, times=N, or at=SECONDS,for=SECONDS;"
        " also match=PATTERN, retry_after=SECONDS (a status), seconds=SECONDS (slow).",
    ),
)


@click.command("fake-server")
@with_options(_OPTIONS)
@names_failures
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
    (then --config) rule that matches it; an id no rule matches is a 404, as the real service
    answers for an id it does not know. End with --job '*' to make any id a job of 10 s.

    \b
    Example:
      jobpoll fake-server --job 'fail-*:duration=5,outcome=FAILED,reach=40' \\
          --job '*:duration=5..30,shape=ease-out' --fault '503:share=0.05,retry_after=1'

    The status is 0 once stopped, 2 for a bad option or file, 1 when it cannot listen.
    """
    scenario = _scenario_of(
        config_file,
        job_specs,
        fault_specs,
        port=port,
        api_key=api_key,
        latency=latency,
        seed=seed,
    )
    if interactive(sys.stderr):
        say("jobpoll fake-server: serving on loopback; Ctrl-C stops it")
    _serve(scenario)
    return EXIT_OK


def _scenario_of(
    config_file: Path | None,
    job_specs: Sequence[str],
    fault_specs: Sequence[str],
    **options: Any,
) -> Scenario:
    """The scenario the options and the file describe.

    Each --job and --fault is read alone first, so that a value the scenario's checks let
    through and then cannot use (a ValueError, an OverflowError: `--fault '²:times=1'`) is
    refused naming its option, as their own refusals do; one in the file names the file.

    Raises:
        Failure: a rule or option that cannot be served (status 2).
    """
    # Imported here: the fake service (aiohttp.web) is not loaded for the other commands.
    from jobpoll.testing._scenario import build_scenario, fault_spec, job_spec, load_scenario_file

    def one_job(text: str) -> Scenario:
        return build_scenario(None, jobs=[(text, job_spec(text))])

    def one_fault(text: str) -> Scenario:
        return build_scenario(None, faults=[(text, fault_spec(text))])

    def whole() -> Scenario:
        data = load_scenario_file(config_file) if config_file is not None else None
        return build_scenario(
            data,
            source=str(config_file),
            jobs=[(text, job_spec(text)) for text in job_specs],
            faults=[(text, fault_spec(text)) for text in fault_specs],
            **options,
        )

    for text in job_specs:
        _served(f"--job {text!r}", one_job, text)
    for text in fault_specs:
        _served(f"--fault {text!r}", one_fault, text)
    return _served(str(config_file), whole)


def _served(where: str, build: Callable[..., Scenario], *arguments: Any) -> Scenario:
    """`build(*arguments)`, a rule that cannot be served as a failure (status 2): the
    scenario's own message (which says where), or, for an error its checks did not expect,
    `where` and the error."""
    from jobpoll.testing._scenario import ScenarioError

    try:
        return build(*arguments)
    except ScenarioError as exc:
        raise Failure(str(exc)) from None
    except (ValueError, ArithmeticError) as exc:
        raise Failure(f"{where}: {exc}") from None


def _serve(scenario: Scenario) -> None:
    """Serve until SIGINT or SIGTERM.

    Raises:
        Failure: it cannot listen on the port (status 1), or its output was closed (141).
    """
    from jobpoll.testing._service import ScriptedService, serve_until_stopped

    try:
        asyncio.run(serve_until_stopped(ScriptedService(scenario)))
    except BrokenPipeError as exc:  # the reader of its lines went away (`| head -1`)
        raise write_failure(exc, sys.stdout) from None
    except OSError as exc:
        raise Failure(
            f"cannot listen on 127.0.0.1:{scenario.port}"
            f" ({os.strerror(exc.errno) if exc.errno else exc})",
            EXIT_FAILED,
        ) from None

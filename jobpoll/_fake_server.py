"""`jobpoll fake-server`: the fake job service in the foreground, its jobs and faults scripted
by options or a file, for integration tests in any language."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from jobpoll._exits import EXIT_OK, Failure
from jobpoll._options import names_failures, with_options
from jobpoll._output import interactive, say

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
    # Imported here: the fake service (aiohttp.web) is not loaded for the other commands.
    from jobpoll.testing._scenario import build_scenario, fault_spec, job_spec, load_scenario_file
    from jobpoll.testing._service import serve
    from jobpoll.testing._values import ScenarioError

    try:
        jobs = [(text, job_spec(text)) for text in job_specs]
        faults = [(text, fault_spec(text)) for text in fault_specs]
        scenario = build_scenario(
            None if config_file is None else load_scenario_file(config_file),
            source=str(config_file),
            jobs=jobs,
            faults=faults,
            port=port,
            api_key=api_key,
            latency=latency,
            seed=seed,
        )
    except ScenarioError as exc:
        raise Failure(str(exc)) from None
    if interactive(sys.stderr):
        say("jobpoll fake-server: serving on loopback; Ctrl-C stops it")
    serve(scenario)
    return EXIT_OK

"""`python -m jobpoll.testing`: the fake job service from the command line without the `cli`
extra (`jobpoll fake-server` adds jobs and faults per id pattern)."""

from __future__ import annotations

import argparse
import sys

from jobpoll._exits import Failure
from jobpoll.testing._scenario import ScenarioError, build_scenario
from jobpoll.testing._service import serve


def main(argv: list[str] | None = None) -> None:
    """Run the fake service until interrupted (Ctrl-C, SIGINT or SIGTERM)."""
    parser = argparse.ArgumentParser(
        prog="python -m jobpoll.testing", description="Serve jobpoll's fake job service."
    )
    parser.add_argument("--port", help="loopback port (0, the default: any free one)")
    parser.add_argument("--api-key", help="the key to accept (random if unset)")
    parser.add_argument(
        "--auto-create-duration",
        metavar="SECONDS",
        help="answer unknown job ids with a job that finishes after SECONDS instead of a 404",
    )
    parser.add_argument(
        "--latency",
        metavar="SECONDS",
        help="wait this long (real time) before each answer, as over a network",
    )
    try:
        scenario = build_scenario(**vars(parser.parse_args(argv)))
    except ScenarioError as exc:
        parser.error(str(exc))
    try:
        serve(scenario)
    except Failure as exc:
        if str(exc):
            print(f"{parser.prog}: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()

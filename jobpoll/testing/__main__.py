"""Serve the fake job service from the command line, for a demo or a benchmark's other process.

    python -m jobpoll.testing --port 8080 --auto-create-duration 30

answers every id with a job that finishes 30 s after its first request (without the option,
with a 404: no job is scripted here, and the real service answers 404 for an id it does not
know), prints one JSON line, `{"base_url": ..., "api_key": ...}`, then serves until interrupted
(Ctrl-C, SIGINT or SIGTERM); it then prints a last JSON line of counters, `{"requests": ...,
"peak_in_flight": ...}`, for a benchmark that runs it in a second process.

It needs nothing beyond jobpoll itself; `jobpoll fake-server` (the `cli` extra) serves the same
service with jobs and faults scripted per id pattern.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys

from jobpoll._exits import write_failure
from jobpoll.testing._service import FakeJobsService, serve_until_stopped


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be from 0 to 65535, got {text}")
    return port


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not 0 <= seconds < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, 0 or more, got {text}")
    return seconds


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jobpoll.testing", description="Serve jobpoll's fake job service."
    )
    parser.add_argument("--port", type=_port, default=0, help="loopback port (0: any free one)")
    parser.add_argument("--api-key", default=None, help="the key to accept (random if unset)")
    parser.add_argument(
        "--auto-create-duration",
        type=_seconds,
        default=None,
        metavar="SECONDS",
        help="answer unknown job ids with a job that finishes after SECONDS instead of a 404",
    )
    parser.add_argument(
        "--latency",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait this long (real time) before each answer, as over a network",
    )
    arguments = parser.parse_args(argv)
    if arguments.api_key is not None and not (
        arguments.api_key.isascii() and arguments.api_key.isprintable() and arguments.api_key
    ):
        parser.error("argument --api-key: must be printable ASCII text, not empty")
    return arguments


def main(argv: list[str] | None = None) -> None:
    """Run the fake service until interrupted."""
    arguments = _arguments(argv)
    service = FakeJobsService(
        api_key=arguments.api_key,
        port=arguments.port,
        auto_create_duration=arguments.auto_create_duration,
        latency=arguments.latency,
    )
    try:
        asyncio.run(serve_until_stopped(service))
    except BrokenPipeError as exc:  # the reader of its lines went away (`| head -1`): 141
        sys.exit(write_failure(exc, sys.stdout).exit_code)
    except OSError as exc:
        print(
            f"python -m jobpoll.testing: cannot listen on 127.0.0.1:{arguments.port}:"
            f" {os.strerror(exc.errno) if exc.errno else exc}",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()

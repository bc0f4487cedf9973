"""Serve the fake job service from the command line, for a demo or a benchmark's other process.

    python -m jobpoll.testing --port 8080 --auto-create-duration 30

prints one JSON line, `{"base_url": ..., "api_key": ...}`, then serves until interrupted
(Ctrl-C, SIGINT or SIGTERM); it then prints a last JSON line of counters, `{"requests": ...,
"peak_in_flight": ...}`, for a benchmark that runs it in a second process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from jobpoll.testing._service import FakeJobsService


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jobpoll.testing", description="Serve jobpoll's fake job service."
    )
    parser.add_argument("--port", type=int, default=0, help="loopback port (0: any free one)")
    parser.add_argument("--api-key", default=None, help="the key to accept (random if unset)")
    parser.add_argument(
        "--auto-create-duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="answer unknown job ids with a job that finishes after SECONDS instead of a 404",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long (real time) before each answer, as over a network",
    )
    return parser.parse_args(argv)


async def _serve(arguments: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    service = FakeJobsService(
        api_key=arguments.api_key,
        port=arguments.port,
        auto_create_duration=arguments.auto_create_duration,
        latency=arguments.latency,
    )
    async with service:
        print(json.dumps({"base_url": service.base_url, "api_key": service.api_key}), flush=True)
        await stop.wait()
    counters = {"requests": service.request_count(), "peak_in_flight": service.peak_in_flight}
    print(json.dumps(counters), flush=True)


def main(argv: list[str] | None = None) -> None:
    """Run the fake service until interrupted."""
    asyncio.run(_serve(_arguments(argv)))


if __name__ == "__main__":
    main()

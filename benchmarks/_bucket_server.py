"""A rate-limited job service for bench_ratelimit.py (run as a program): an API gateway's token
bucket in front of jobpoll's fake service, on loopback.

Each request to `GET {base_url}/bankaccounts/jobs?jobId=...` first waits `--rtt` seconds (a
round trip added in front of the bucket), then takes a token from a bucket that fills at
`--rate` tokens a second up to `--burst`. A request that finds no token is refused at once:
429, `Retry-After: 1`. One that gets a token is answered by a `FakeJobsService` in this process
(over loopback HTTP, so the answer is the fake service's own); an id's first accepted request
makes its job, which ends a duration drawn from `--seed` and the id alone (`--min-job` to
`--max-job` seconds) after that request. `--change T=RATE` sets the rate to RATE from T seconds
after the first request on (repeatable).

It prints one JSON line once listening (`base_url`, `api_key`). On SIGTERM or SIGINT it writes
what it saw to `--record` as JSON and exits: every request's time (seconds after the first
request), whether accepted, and its job id; each job's first accepted request and duration;
the rates in force; the first request's time on the monotonic clock (which every process
shares); its own CPU seconds and wall time, and how late a 10 ms ticker woke (the
event loop's lag: this process waiting for a core, or busy).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import time
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from jobpoll.testing import FakeJobsService, RateLimit

TICK = 0.01


class Gateway:
    """The bucket, the rate schedule, the record, and the fake service behind them."""

    def __init__(self, arguments: argparse.Namespace, fake: FakeJobsService) -> None:
        self.arguments = arguments
        self.fake = fake
        self.jobs_url = fake.base_url + "/bankaccounts/jobs"
        self.origin: float | None = None
        self.bucket = RateLimit(arguments.rate, arguments.burst)  # the fake's own bucket
        self.changes = sorted(arguments.change)
        self.rates: list[tuple[float, float]] = [(0.0, arguments.rate)]
        self.requests: list[tuple[float, int, str]] = []
        self.jobs: dict[str, tuple[float, float]] = {}
        self.session: aiohttp.ClientSession | None = None

    def duration_of(self, job_id: str) -> float:
        """The job's duration: drawn from the seed and the id alone, whatever the order."""
        draw = random.Random(f"{self.arguments.seed}/{job_id}").random()
        low: float = self.arguments.min_job
        high: float = self.arguments.max_job
        return low + (high - low) * draw

    def _schedule(self, now: float) -> float:
        if self.origin is None:
            self.origin = now
        while self.changes and now >= self.origin + self.changes[0][0]:
            offset, rate = self.changes.pop(0)
            self.bucket.rate = rate
            self.rates.append((offset, rate))
        return now - self.origin

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.arguments.rtt:
            await asyncio.sleep(self.arguments.rtt)
        now = time.monotonic()
        elapsed = self._schedule(now)
        job_id = request.query.get("jobId", "")
        if self.bucket.refusal(now) is not None:
            self.requests.append((elapsed, 0, job_id))
            return web.json_response(
                {"message": "Too Many Requests"}, status=429, headers={"Retry-After": "1"}
            )
        self.requests.append((elapsed, 1, job_id))
        if job_id and job_id not in self.jobs:
            duration = self.duration_of(job_id)
            self.fake.add_job(job_id, duration=duration)
            self.jobs[job_id] = (elapsed, duration)
        assert self.session is not None
        forwarded = {k: v for k, v in request.headers.items() if k in ("X-API-KEY", "Accept")}
        async with self.session.get(
            self.jobs_url, params=request.query, headers=forwarded
        ) as answer:
            body = await answer.read()
            return web.Response(body=body, status=answer.status, content_type=answer.content_type)

    def record(self, cpu: float, wall: float, lags: list[float]) -> dict[str, Any]:
        lags.sort()
        return {
            "origin": self.origin,
            "requests": self.requests,
            "jobs": self.jobs,
            "rates": self.rates,
            "cpu": cpu,
            "wall": wall,
            "lag_p99": lags[int(0.99 * (len(lags) - 1))] if lags else 0.0,
            "lag_max": lags[-1] if lags else 0.0,
        }


async def ticker(lags: list[float]) -> None:
    """How late each 10 ms sleep wakes: the loop's lag."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(TICK)
        lags.append(time.monotonic() - before - TICK)


async def serve(arguments: argparse.Namespace) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with FakeJobsService(api_key=arguments.api_key) as fake:
        gateway = Gateway(arguments, fake)
        app = web.Application()
        app.router.add_get(URL(fake.base_url).path + "/bankaccounts/jobs", gateway.handle)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        lags: list[float] = []
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), auto_decompress=False
        ) as session:
            gateway.session = session
            try:
                site = web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                host, port = runner.addresses[0][:2]
                base_url = f"http://{host}:{port}{URL(fake.base_url).path}"
                print(json.dumps({"base_url": base_url, "api_key": fake.api_key}), flush=True)
                ticking = asyncio.create_task(ticker(lags))
                cpu0, wall0 = time.process_time(), time.monotonic()
                await stop.wait()
                cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
                ticking.cancel()
            finally:
                await runner.cleanup()
    return gateway.record(cpu, wall, lags)


def change(text: str) -> tuple[float, float]:
    """`T=RATE`: the rate from T seconds after the first request on."""
    at, _, rate = text.partition("=")
    return float(at), float(rate)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--burst", type=float, required=True)
    parser.add_argument("--change", type=change, action="append", default=[])
    parser.add_argument("--rtt", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-job", type=float, default=2.0)
    parser.add_argument("--max-job", type=float, default=10.0)
    parser.add_argument("--api-key", default="bench-ratelimit-key")
    parser.add_argument("--record", required=True)
    arguments = parser.parse_args()
    record = asyncio.run(serve(arguments))
    with open(arguments.record, "w") as out:
        json.dump(record, out)


if __name__ == "__main__":
    main()

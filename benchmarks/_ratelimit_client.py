"""The clients of bench_ratelimit.py, each run as a program in its own process, so that the
jobpoll it imports is the one first on its PYTHONPATH (today's, or a baseline's).

    _ratelimit_client.py fanout --base-url URL --api-key KEY --ids FILE [--max-rate R] --cap S
    _ratelimit_client.py lone ...        (the same options: a wait_for_job task per id)
    _ratelimit_client.py saq-worker --base-url URL --api-key KEY --redis URL --queue NAME
        --name NAME --outcomes FILE [--max-rate R]
    _ratelimit_client.py saq-submit --redis URL --queue NAME --ids FILE

`fanout` and `lone` print one JSON line at the end: when the wait started and ended (on the
monotonic clock, which every process of the machine shares), the outcomes by kind, whether the
run was cut at `--cap` seconds, and the jobpoll it ran. `saq-worker` appends each outcome's job
id to `--outcomes`, a line per delivery; `saq-submit` prints the jobpoll it ran.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import inspect
import json
import logging
import time
from typing import Any

from saq import Queue, Worker

import jobpoll
from jobpoll import JobResult, JobsClient, wait_for_job, wait_for_jobs
from jobpoll.saq import SaqWaits


def make_client(arguments: argparse.Namespace) -> JobsClient:
    """The client under test; `max_rate` only when asked for, as older code has none."""
    extra: dict[str, Any] = {}
    if arguments.max_rate is not None:
        extra["max_rate"] = arguments.max_rate
    return JobsClient(arguments.api_key, base_url=arguments.base_url, **extra)


async def fanout(client: JobsClient, ids: list[str], outcomes: collections.Counter[str]) -> None:
    async with wait_for_jobs(client, ids) as results:
        async for result in results:
            outcomes[_kind(result)] += 1


async def lone(client: JobsClient, ids: list[str], outcomes: collections.Counter[str]) -> None:
    async def one(job_id: str) -> None:
        try:
            await wait_for_job(client, job_id)
        except jobpoll.JobPollError as exc:
            outcomes[type(exc).__name__] += 1
        else:
            outcomes["ok"] += 1

    async with asyncio.TaskGroup() as group:
        for job_id in ids:
            group.create_task(one(job_id))


def _kind(result: JobResult) -> str:
    return "ok" if result.ok else type(result.error).__name__


async def wait(arguments: argparse.Namespace, ids: list[str]) -> dict[str, Any]:
    outcomes: collections.Counter[str] = collections.Counter()
    run = fanout if arguments.mode == "fanout" else lone
    cut = False
    async with make_client(arguments) as client:
        start = time.monotonic()
        try:
            async with asyncio.timeout(arguments.cap):
                await run(client, ids, outcomes)
        except TimeoutError:
            cut = True
        end = time.monotonic()
    return {
        "start": start,
        "end": end,
        "cut": cut,
        "outcomes": dict(outcomes),
        "jobpoll": jobpoll.__file__,
    }


async def saq_worker(arguments: argparse.Namespace) -> None:
    waits = _saq_waits(arguments)
    path = arguments.outcomes

    async def record_outcome(ctx: dict[str, Any], *, result: dict[str, Any]) -> None:
        await asyncio.to_thread(append_line, path, result["jobId"])

    settings = waits.worker_settings(
        client=lambda: make_client(arguments),
        functions=[("record_outcome", record_outcome)],
        id=arguments.name,
        concurrency=arguments.concurrency,
        timers={"schedule": 1, "sweep": 2, "abort": 1, "worker_info": 10},
    )
    worker = Worker(**settings)
    await waits.queue.connect()
    try:
        await worker.start()
    finally:
        await waits.queue.disconnect()


def _saq_waits(arguments: argparse.Namespace) -> SaqWaits:
    extra: dict[str, Any] = {}
    if arguments.max_rate is not None:
        extra["max_rate"] = arguments.max_rate
    queue = Queue.from_url(arguments.redis, name=arguments.queue)
    if "durability" in inspect.signature(SaqWaits).parameters:  # not in the baseline's
        extra["durability"] = "volatile-accepted"  # bench_queue.redis_server keeps no files
    return SaqWaits(queue, on_outcome="record_outcome", **extra)


def append_line(path: str, line: str) -> None:
    """One short line in append mode: the lines of several processes never mix."""
    with open(path, "a") as out:
        out.write(line + "\n")


def read_ids(path: str) -> list[str]:
    with open(path) as lines:
        return lines.read().split()


async def saq_submit(arguments: argparse.Namespace, ids: list[str]) -> None:
    waits = _saq_waits(arguments)
    try:
        await waits.submit(ids)
    finally:
        await waits.queue.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["fanout", "lone", "saq-worker", "saq-submit"])
    parser.add_argument("--base-url")
    parser.add_argument("--api-key")
    parser.add_argument("--ids")
    parser.add_argument("--max-rate", type=float)
    parser.add_argument("--cap", type=float, default=3600.0)
    parser.add_argument("--redis")
    parser.add_argument("--queue")
    parser.add_argument("--name")
    parser.add_argument("--outcomes")
    parser.add_argument("--concurrency", type=int, default=50)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if arguments.mode in ("fanout", "lone"):
        print(json.dumps(asyncio.run(wait(arguments, read_ids(arguments.ids)))), flush=True)
    elif arguments.mode == "saq-worker":
        asyncio.run(saq_worker(arguments))
    else:
        asyncio.run(saq_submit(arguments, read_ids(arguments.ids)))
        print(json.dumps({"jobpoll": jobpoll.__file__}), flush=True)


if __name__ == "__main__":
    main()

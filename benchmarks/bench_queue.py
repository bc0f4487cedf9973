"""Waits scaled out on SAQ: polls per second per worker, Redis commands per poll, Redis memory
per waiting job, and outcomes lost or delivered twice while workers are killed.

Run from the repository root (needs the `saq` extra and a `redis-server` on the PATH):

    .venv/bin/python benchmarks/bench_queue.py [--workers 2] [--steady 3000] [--seconds 10]
        [--idle 10000] [--kill-jobs 1000] [--kills 3]

It starts its own `redis-server` on a free loopback port (no persistence) and the fake job
service in this process; the SAQ workers are child processes (`_queue_worker.py`). Three
parts, each on an empty Redis:

1. Throughput: `--steady` waits polled once a second each (more than the workers can do), on
   `--workers` workers of concurrency 50; over `--seconds` it counts the polls the service
   answered, the workers' CPU, and Redis's own command counts (`INFO commandstats`, which
   counts the commands run inside jobpoll's and SAQ's Lua scripts too, and the scripts'
   EVALSHA besides). SAQ's upkeep (its scheduler every second, its sweep) is included.
2. Memory: `--idle` waits polled once, then due again in ten minutes: each is a scheduled
   link in Redis. `INFO memory`'s `used_memory_dataset` before and after, per waiting job
   (the total, `used_memory`, swings by megabytes with the clients' buffers).
3. Kills: `--kill-jobs` jobs of 1 to 5 s (a fifth FAILED) on three workers of concurrency 4
   (mending every 5 s);
   every 3 s the benchmark kills one worker with SIGKILL and starts another, `--kills` times;
   then it waits for every outcome. Lost: ids with no outcome. Duplicated: outcomes enqueued
   to the outcome function more than once. Both must be 0: the exit status is 1 otherwise.
   It also counts calls of the outcome function made again because a kill cut a call short
   (SAQ runs a job again when its worker dies in it: at least once).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from jobpoll._saq_links import Links
from jobpoll.testing import FakeJobsService

WORKER = Path(__file__).parent / "_queue_worker.py"
sys.path.insert(0, str(Path(__file__).parent))
from _queue_worker import make_waits  # noqa: E402


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def redis_server() -> Iterator[str]:
    """A `redis-server` of our own on a free loopback port, without persistence."""
    server = shutil.which("redis-server")
    if server is None:
        sys.exit("bench_queue.py needs redis-server (e.g. apt-get install redis-server)")
    port = _free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


class Workers:
    """SAQ worker processes of one queue."""

    def __init__(
        self,
        redis_url: str,
        queue: str,
        service: FakeJobsService,
        policy: str,
        concurrency: int,
        mend_interval: float = 60.0,
    ) -> None:
        self.args = (redis_url, queue, service.base_url, service.api_key, policy, concurrency)
        self.mend_interval = mend_interval
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started = 0

    def start(self) -> str:
        redis_url, queue, base_url, api_key, policy, concurrency = self.args
        name = f"w{self.started}"
        self.started += 1
        command = [sys.executable, str(WORKER), "--redis", redis_url, "--queue", queue]
        command += ["--base-url", base_url, "--api-key", api_key, "--name", name]
        command += ["--policy", policy, "--concurrency", str(concurrency)]
        command += ["--mend-interval", str(self.mend_interval)]
        self.processes[name] = subprocess.Popen(command)
        return name

    def cpu_seconds(self) -> float:
        total = 0.0
        for process in self.processes.values():
            with open(f"/proc/{process.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    async def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                await asyncio.to_thread(process.wait, 30)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait, 30)
        self.processes.clear()


async def until(check: Any, what: str, within: float) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what} after {within:.0f} s")
        await asyncio.sleep(0.2)


async def commands(redis: Redis) -> dict[str, int]:
    """How many times Redis ran each command (those run inside Lua scripts included)."""
    stats = await redis.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if name != "cmdstat_info"
    }


async def throughput(
    redis_url: str, redis: Redis, service: FakeJobsService, arguments: argparse.Namespace
) -> dict[str, Any]:
    await redis.flushdb()
    queue = "steady" + uuid.uuid4().hex[:6]
    workers = Workers(redis_url, queue, service, "steady", 50)
    waits = make_waits(redis_url, queue, "steady")
    try:
        for _ in range(arguments.workers):
            workers.start()
        ids = [str(uuid.uuid4()) for _ in range(arguments.steady)]
        base = service.request_count()
        await waits.submit(ids)
        await until(
            lambda: _true(service.request_count() - base >= len(ids)), "the first polls", 120
        )
        await asyncio.sleep(3)  # warm up
        polls0, cpu0, ran0 = service.request_count(), workers.cpu_seconds(), await commands(redis)
        start = time.monotonic()
        await asyncio.sleep(arguments.seconds)
        elapsed = time.monotonic() - start
        polls1, cpu1, ran1 = service.request_count(), workers.cpu_seconds(), await commands(redis)
    finally:
        await workers.stop()
        await waits.queue.disconnect()
    polls = polls1 - polls0
    ran = {name: calls - ran0.get(name, 0) for name, calls in ran1.items()}
    top = sorted(ran.items(), key=lambda item: -item[1])[:8]
    return {
        "polls_per_second_per_worker": polls / elapsed / arguments.workers,
        "worker_cpu_ms_per_poll": 1000 * (cpu1 - cpu0) / polls,
        "redis_commands_per_poll": sum(ran.values()) / polls,
        "breakdown": ", ".join(f"{name} {calls / polls:.1f}" for name, calls in top),
        "polls": polls,
        "seconds": elapsed,
    }


async def _true(value: bool) -> bool:
    return value


async def memory(
    redis_url: str, redis: Redis, service: FakeJobsService, arguments: argparse.Namespace
) -> dict[str, float]:
    await redis.flushdb()
    queue = "idle" + uuid.uuid4().hex[:6]
    workers = Workers(redis_url, queue, service, "idle", 50)
    waits = make_waits(redis_url, queue, "idle")
    saq_queue = waits.queue
    try:
        for _ in range(arguments.workers):
            workers.start()
        await until(lambda: _ready(redis, queue, arguments.workers), "the workers", 60)
        await asyncio.sleep(1)
        # The dataset (used_memory less the overhead of clients, buffers and the keyspace's
        # own tables): the total swings by megabytes as client buffers grow and shrink.
        before = int((await redis.info("memory"))["used_memory_dataset"])
        keys_before = int(await redis.dbsize())
        ids = [str(uuid.uuid4()) for _ in range(arguments.idle)]
        base = service.request_count()
        await waits.submit(ids)

        async def settled() -> bool:
            polled = service.request_count() - base >= len(ids)
            queued = await saq_queue.count("queued") + await saq_queue.count("active")
            # Each wait: its record and its next link; the links that ran expire in 10 s.
            keys = int(await redis.dbsize()) - keys_before
            return polled and queued == 0 and keys <= 2 * len(ids) + 50

        await until(settled, "every wait polled once and its first link expired", 180)
        after = int((await redis.info("memory"))["used_memory_dataset"])
        # The records' keys as jobpoll's own `Links` names them (the second link: the first
        # has run and expired).
        keys = Links(queue=saq_queue, poll_timeout=30.0, outcome_ttl=60.0)
        sample = keys.link_id(ids[0], 1)
        link_bytes = int(await redis.memory_usage(sample) or 0)
        record_bytes = int(await redis.memory_usage(keys.wait_key(ids[0])) or 0)
        link_json = int(await redis.strlen(sample))
    finally:
        await workers.stop()
        await saq_queue.disconnect()
    return {
        "bytes_per_waiting_job": (after - before) / len(ids),
        "link_key_bytes": link_bytes,
        "link_json_bytes": link_json,
        "record_key_bytes": record_bytes,
        "waiting": len(ids),
    }


async def _ready(redis: Redis, queue: str, count: int) -> bool:
    return int(await redis.llen(f"bench:{queue}:ready")) >= count


async def kills(
    redis_url: str, redis: Redis, service: FakeJobsService, arguments: argparse.Namespace
) -> dict[str, float]:
    await redis.flushdb()
    queue = "kill" + uuid.uuid4().hex[:6]
    # Mending every 5 s, so that a link lost by a sweep cut short is back soon.
    workers = Workers(redis_url, queue, service, "fast", 4, mend_interval=5.0)
    waits = make_waits(redis_url, queue, "fast")
    rng = random.Random(1)
    ids = [
        service.add_job(
            duration=rng.uniform(1.0, 5.0),
            final_status="FAILED" if index % 5 == 0 else "FINISHED",
        )
        for index in range(arguments.kill_jobs)
    ]
    outcomes_key, calls_key = f"bench:{queue}:outcomes", f"bench:{queue}:calls"
    start = time.monotonic()
    try:
        for _ in range(3):
            workers.start()
        await until(lambda: _ready(redis, queue, 3), "the workers", 60)
        await waits.submit(ids)
        for _ in range(arguments.kills):
            await asyncio.sleep(3)
            workers.kill(rng.choice(sorted(workers.processes)))
            workers.start()

        async def all_in() -> bool:
            return int(await redis.hlen(outcomes_key)) >= len(ids)

        try:
            await until(all_in, "every outcome", arguments.kill_timeout)
        except SystemExit as exc:
            print(exc, file=sys.stderr)
        elapsed = time.monotonic() - start
        outcomes = {key.decode() for key in await redis.hkeys(outcomes_key)}
        calls = [job_id.decode() for job_id in await redis.lrange(calls_key, 0, -1)]
        delivered = await waits.delivered()
    finally:
        await workers.stop()
        await waits.queue.disconnect()
    return {
        "jobs": len(ids),
        "kills": arguments.kills,
        "lost": len(set(ids) - outcomes),
        "duplicated": max(0, delivered - len(ids)),
        "calls_repeated": len(calls) - len(set(calls)),
        "seconds": elapsed,
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steady", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--kill-jobs", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--kill-timeout", type=float, default=300.0)
    arguments = parser.parse_args()
    with redis_server() as redis_url:
        redis = Redis.from_url(redis_url)
        async with FakeJobsService(auto_create_duration=10**7) as service:
            steady = await throughput(redis_url, redis, service, arguments)
            print(
                f"throughput: {steady['polls_per_second_per_worker']:.0f} polls/s per worker"
                f" ({arguments.workers} workers, {steady['polls']} polls in"
                f" {steady['seconds']:.1f} s); {steady['worker_cpu_ms_per_poll']:.2f} ms of"
                f" worker CPU per poll; {steady['redis_commands_per_poll']:.1f} Redis commands"
                f" per poll, those inside Lua scripts included ({steady['breakdown']})",
                flush=True,
            )
            idle = await memory(redis_url, redis, service, arguments)
            print(
                f"memory: {idle['bytes_per_waiting_job']:.0f} bytes of Redis per waiting job"
                f" ({idle['waiting']} waiting; a link's key {idle['link_key_bytes']} B,"
                f" its JSON {idle['link_json_bytes']} B; the wait's record"
                f" {idle['record_key_bytes']} B)",
                flush=True,
            )
            killed = await kills(redis_url, redis, service, arguments)
            print(
                f"kills: {killed['jobs']} jobs, {killed['kills']} workers killed with SIGKILL:"
                f" {killed['lost']} outcomes lost, {killed['duplicated']} duplicated"
                f" ({killed['calls_repeated']} outcome calls repeated after a kill cut them"
                f" short), all in after {killed['seconds']:.0f} s",
                flush=True,
            )
        await redis.aclose()
    return 1 if killed["lost"] or killed["duplicated"] else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

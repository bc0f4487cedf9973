"""Waits scaled out on SAQ against the bare SAQ floor: worker CPU and Redis commands per poll,
Redis memory per waiting job, and outcomes lost or delivered twice while workers are killed.

Run from the repository root (needs the `saq` extra and a `redis-server` on the PATH):

    .venv/bin/python benchmarks/bench_queue.py [--workers 2] [--steady 3000] [--seconds 10]
        [--rounds 3] [--idle 10000] [--kill-jobs 1000] [--kills 3]

It starts its own `redis-server` on a free loopback port (no persistence) and the fake job
service in this process; the SAQ workers are child processes (`_queue_worker.py`). Each
figure is measured twice in the same run, on an emptied Redis each time: for jobpoll's
waits, and for the floor, a bare SAQ job that makes the same GET (jobpoll's client) and
enqueues the next such job (or the outcome function) itself, as a user would without
jobpoll: no checkpoint, no shared rate, no recovery. Targets: worker CPU per poll at most
`CPU_TARGET` times the floor's, and Redis memory per waiting job at most `MEMORY_TARGET`
bytes, for short waits (jobs that end at their 4th poll) and long ones.

1. Throughput, `--rounds` times (the sides' order alternating): `--steady` waits polled once
   a second each (more than the workers can do), on `--workers` workers of concurrency 50;
   over `--seconds` it counts the polls the service answered, the workers' CPU, and Redis's
   own command counts (`INFO commandstats`, which counts the commands run inside jobpoll's
   and SAQ's Lua scripts too, and the scripts' EVALSHA besides). SAQ's upkeep (its
   scheduler every second, its sweep) and jobpoll's (moving due links, leases) are included.
   Long waits: jobs that never end. Short waits: each job ends at its 4th poll, and a new
   wait is started in its place; its outcome call is counted too. Counted from 11 s after
   the first polls, past the slow start of jobpoll's fleet (`SLOW_START_SECONDS`).
2. Memory: `--idle` waits that then sit in Redis. Short: polled once, due again in ten
   minutes. Long: the jobs move (2 minutes, linear progress) and are polled at 0.2 s, then
   each interval three times the last, the schedule following their progress, and weighed
   after their fifth poll. Per waiting job, once the links that ran expired (10 s): the
   `MEMORY USAGE` of its own keys (the floor's job; a parked wait's record and kept
   checkpoint) plus its share of its sorted set (SAQ's `incomplete`; jobpoll's parked set),
   which the target is checked on; and the growth of `INFO
   memory`'s `used_memory_dataset` (the total, `used_memory`, swings by megabytes with the
   clients' buffers; the dataset's growth still by a few hundred bytes per wait, run to run).
3. Kills: `--kill-jobs` jobs of 1 to 5 s (a fifth FAILED) on three workers of concurrency 4
   (mending every 5 s);
   every 3 s the benchmark kills one worker with SIGKILL and starts another, `--kills` times;
   then it waits for every outcome. Lost: ids with no outcome. Duplicated: outcomes enqueued
   to the outcome function more than once. Both must be 0: the exit status is 1 otherwise.
   It also counts calls of the outcome function made again because a kill cut a call short
   (SAQ runs a job again when its worker dies in it: at least once).

Exit status: 1 when an outcome was lost or duplicated, else 2 when a target is missed, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from jobpoll import JobStatus
from jobpoll._saq_rate import SLOW_START_SECONDS
from jobpoll.testing import FakeJobsService

sys.path.insert(0, str(Path(__file__).parent))
from _queue_fleet import Side, Workers
from _queue_worker import make_waits

#: The targets: worker CPU per poll at most this many times the bare floor's...
CPU_TARGET = 1.1
#: ...and Redis memory per waiting job at most this many bytes, short waits and long.
MEMORY_TARGET = 800.0
#: Polls a long wait has made when it is weighed.
LONG_POLLS = 5


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


async def end_at_fourth_poll(service: FakeJobsService, side: Side, live: set[str]) -> None:
    """Short waits: each job ends at its 4th poll (FINISHED once it was polled 3 times), and
    a new wait is started in its place, for as long as the task runs."""
    while True:
        ended = [job_id for job_id in live if service.request_count(job_id) >= 3]
        for job_id in ended:
            service.set_job(job_id, status=JobStatus.FINISHED, progress=100)
            live.discard(job_id)
        fresh = [str(uuid.uuid4()) for _ in ended]
        live.update(fresh)
        await side.start(fresh)
        await asyncio.sleep(0.1)


async def throughput(
    redis_url: str,
    redis: Redis,
    service: FakeJobsService,
    arguments: argparse.Namespace,
    *,
    side_name: str,
    short: bool,
) -> dict[str, Any]:
    await redis.flushdb()
    queue = "steady" + uuid.uuid4().hex[:6]
    workers = Workers(redis_url, queue, service, "steady", 50, side=side_name)
    side = Side(side_name, redis_url, queue, "steady")
    ender: asyncio.Task[None] | None = None
    try:
        for _ in range(arguments.workers):
            workers.start()
        await until(lambda: _ready(redis, queue, arguments.workers), "the workers", 60)
        ids = [str(uuid.uuid4()) for _ in range(arguments.steady)]
        base = service.request_count()
        await side.start(ids)
        await until(
            lambda: _true(service.request_count() - base >= len(ids)), "the first polls", 120
        )
        if short:
            ender = asyncio.create_task(end_at_fourth_poll(service, side, set(ids)))
        # Warmed up, and past jobpoll's fleet's slow start (its polls' extra turns at first).
        await asyncio.sleep(SLOW_START_SECONDS + 1)
        polls0, cpu0, ran0 = service.request_count(), workers.cpu_seconds(), await commands(redis)
        start = time.monotonic()
        await asyncio.sleep(arguments.seconds)
        elapsed = time.monotonic() - start
        polls1, cpu1, ran1 = service.request_count(), workers.cpu_seconds(), await commands(redis)
    finally:
        if ender is not None:
            ender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ender
        await workers.stop()
        await side.close()
    polls = polls1 - polls0
    ran = {name: calls - ran0.get(name, 0) for name, calls in ran1.items()}
    top = sorted(ran.items(), key=lambda item: -item[1])[:8]
    return {
        "polls_per_second_per_worker": polls / elapsed / arguments.workers,
        "cpu_ms_per_poll": 1000 * (cpu1 - cpu0) / polls,
        "commands_per_poll": sum(ran.values()) / polls,
        "breakdown": ", ".join(f"{name} {calls / polls:.1f}" for name, calls in top),
    }


async def _true(value: bool) -> bool:
    return value


async def memory(
    redis_url: str,
    redis: Redis,
    service: FakeJobsService,
    arguments: argparse.Namespace,
    *,
    side_name: str,
    long: bool,
) -> dict[str, float]:
    await redis.flushdb()
    queue = "idle" + uuid.uuid4().hex[:6]
    policy = "long" if long else "idle"
    workers = Workers(redis_url, queue, service, policy, 50, side=side_name)
    side = Side(side_name, redis_url, queue, policy)
    # The floor's jobs are alike however many polls they made: it is weighed after one.
    polled = LONG_POLLS if long and side_name == "jobpoll" else 1
    try:
        for _ in range(arguments.workers):
            workers.start()
        await until(lambda: _ready(redis, queue, arguments.workers), "the workers", 60)
        await asyncio.sleep(1)
        # The dataset (used_memory less the overhead of clients, buffers and the keyspace's
        # own tables): the total swings by megabytes as client buffers grow and shrink.
        before = int((await redis.info("memory"))["used_memory_dataset"])
        keys_before = int(await redis.dbsize())
        if long:
            ids = [service.add_job(duration=120.0) for _ in range(arguments.idle)]
        else:
            ids = [str(uuid.uuid4()) for _ in range(arguments.idle)]
        await side.start(ids)
        per_wait = 1 if side_name == "bare" else 2  # its record and its next link

        async def settled() -> bool:
            if not all(service.request_count(job_id) >= polled for job_id in ids):
                return False
            if await side.queue.count("queued") + await side.queue.count("active"):
                return False
            # The links (jobs) that ran expire in 10 s.
            return int(await redis.dbsize()) - keys_before <= per_wait * len(ids) + 50

        await until(settled, f"every wait polled {polled} times, the links run expired", 300)
        after = int((await redis.info("memory"))["used_memory_dataset"])
        # Each wait's own keys and its share of its sorted set, by `MEMORY USAGE`:
        # steadier than the dataset's growth, which swings by a few hundred bytes per wait.
        waiting = [await side.live_keys(job_id, service.request_count(job_id)) for job_id in ids]
        async with redis.pipeline(transaction=False) as pipe:
            for keys in waiting:
                for key in keys:
                    pipe.memory_usage(key)
            weights = [int(weight or 0) for weight in await pipe.execute()]
        key_bytes = weights[: len(waiting[0])]
        stored = int(await redis.strlen(waiting[0][0]))
        queue_bytes = entries = 0
        for key in side.queue_keys():
            queue_bytes += int(await redis.memory_usage(key, samples=0) or 0)
            entries += int(await redis.zcard(key))
        entry = queue_bytes / max(1, entries)
    finally:
        await workers.stop()
        await side.close()
    return {
        "bytes_per_waiting_job": (sum(weights) + queue_bytes) / len(ids),
        "dataset_bytes_per_waiting_job": (after - before) / len(ids),
        "job_key_bytes": key_bytes[0],
        "job_json_bytes": stored,
        "record_key_bytes": sum(key_bytes[1:]),
        "queue_entry_bytes": entry,
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


SIDES = ("jobpoll", "bare")


async def cpu_rounds(
    redis_url: str, redis: Redis, service: FakeJobsService, arguments: argparse.Namespace
) -> bool:
    """Part 1, `--rounds` times: print each round's figures, then the medians and ratios;
    whether the CPU target is met for long waits and short."""
    met = True
    for short in (False, True):
        kind = "short waits (4 polls)" if short else "long waits"
        figures: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        for number in range(arguments.rounds):
            order = SIDES if number % 2 == 0 else SIDES[::-1]
            for side in order:
                steady = await throughput(
                    redis_url, redis, service, arguments, side_name=side, short=short
                )
                figures[side].append(steady)
                print(
                    f"throughput, {kind}, {side}, round {number + 1}:"
                    f" {steady['polls_per_second_per_worker']:.0f} polls/s per worker;"
                    f" {steady['cpu_ms_per_poll']:.3f} ms of worker CPU per poll;"
                    f" {steady['commands_per_poll']:.1f} Redis commands per poll"
                    f" ({steady['breakdown']})",
                    flush=True,
                )
        ratios = [
            ours["cpu_ms_per_poll"] / floor["cpu_ms_per_poll"]
            for ours, floor in zip(figures["jobpoll"], figures["bare"], strict=True)
        ]
        ratio = statistics.median(ratios)
        cpu = {
            side: statistics.median(f["cpu_ms_per_poll"] for f in figures[side]) for side in SIDES
        }
        calls = {
            side: statistics.median(f["commands_per_poll"] for f in figures[side]) for side in SIDES
        }
        verdict = "met" if ratio <= CPU_TARGET else "MISSED"
        met = met and ratio <= CPU_TARGET
        print(
            f"CPU per poll, {kind} (medians of {arguments.rounds} rounds): jobpoll"
            f" {cpu['jobpoll']:.3f} ms, bare SAQ floor {cpu['bare']:.3f} ms; jobpoll / floor"
            f" {ratio:.2f} (median of the rounds' ratios; target <= {CPU_TARGET}: {verdict});"
            f" Redis commands per poll: jobpoll {calls['jobpoll']:.1f}, floor"
            f" {calls['bare']:.1f} ({calls['jobpoll'] / calls['bare']:.2f}x)",
            flush=True,
        )
    return met


async def memory_sides(
    redis_url: str, redis: Redis, service: FakeJobsService, arguments: argparse.Namespace
) -> bool:
    """Part 2: print the bytes per waiting job of each side; whether the target is met."""
    met = True
    for long in (False, True):
        kind = f"long waits ({LONG_POLLS} polls)" if long else "short waits (1 poll)"
        weighed = {
            side: await memory(redis_url, redis, service, arguments, side_name=side, long=long)
            for side in SIDES
        }
        ours, floor = weighed["jobpoll"], weighed["bare"]
        verdict = "met" if ours["bytes_per_waiting_job"] <= MEMORY_TARGET else "MISSED"
        met = met and ours["bytes_per_waiting_job"] <= MEMORY_TARGET
        print(
            f"memory, {kind}: jobpoll {ours['bytes_per_waiting_job']:.0f} B of Redis per"
            f" waiting job, bare SAQ floor {floor['bytes_per_waiting_job']:.0f} B"
            f" ({ours['bytes_per_waiting_job'] / floor['bytes_per_waiting_job']:.2f}x; target"
            f" <= {MEMORY_TARGET:.0f} B: {verdict}; {arguments.idle} waiting; the dataset's"
            f" growth per waiting job: jobpoll {ours['dataset_bytes_per_waiting_job']:.0f} B,"
            f" floor {floor['dataset_bytes_per_waiting_job']:.0f} B). One wait's keys"
            f" (MEMORY USAGE): jobpoll's kept checkpoint {ours['job_key_bytes']} B (its JSON"
            f" {ours['job_json_bytes']} B), its wait's record {ours['record_key_bytes']} B,"
            f" its entry in the parked set about {ours['queue_entry_bytes']:.0f} B; the"
            f" floor's job {floor['job_key_bytes']} B (its JSON {floor['job_json_bytes']} B),"
            f" its entry in SAQ's `incomplete` about {floor['queue_entry_bytes']:.0f} B",
            flush=True,
        )
    return met


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steady", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=int, default=10000)
    parser.add_argument("--kill-jobs", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--kill-timeout", type=float, default=300.0)
    arguments = parser.parse_args()
    with redis_server() as redis_url:
        redis = Redis.from_url(redis_url)
        async with FakeJobsService(auto_create_duration=10**7) as service:
            cpu_met = await cpu_rounds(redis_url, redis, service, arguments)
            memory_met = await memory_sides(redis_url, redis, service, arguments)
            killed = await kills(redis_url, redis, service, arguments)
            print(
                f"kills: {killed['jobs']} jobs, {killed['kills']} workers killed with SIGKILL:"
                f" {killed['lost']} outcomes lost, {killed['duplicated']} duplicated"
                f" ({killed['calls_repeated']} outcome calls repeated after a kill cut them"
                f" short), all in after {killed['seconds']:.0f} s",
                flush=True,
            )
        await redis.aclose()
    if killed["lost"] or killed["duplicated"]:
        return 1
    return 0 if cpu_met and memory_met else 2


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

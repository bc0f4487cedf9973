"""The CPU of `jobpoll wait` with its live view, against the same fan-out with no view at all.

Run from the repository root (needs the cli extra):

    .venv/bin/python benchmarks/bench_cli.py [--jobs 2000] [--job-seconds 10] [--rounds 5]
        [--max-interval 30]

The fake job service runs in a separate process (`python -m jobpoll.testing`), answering each
new id with a job of `--job-seconds` from its first poll, after 10 ms (as over a network).
Each round waits on `--jobs` fresh ids three ways, each in a child process of its own, in an
order that rotates from round to round:

- bare: a Python program that runs `wait_for_jobs` on the ids to the end with the policy the
  command uses (by default, and with `--max-interval`), and prints nothing (the same fan-out,
  without the view);
- view: `jobpoll wait -f IDS` with its standard output on a pseudo-terminal of 120 x 40, so
  it draws its live view (for so many jobs: one bar, the totals and the latest changes);
- json: `jobpoll wait -f IDS` writing JSON lines to a pipe (a line per change and outcome).

The CPU of each (user + system, from `getrusage` of the reaped child, so the command's own
start-up and imports count) is printed per round; then the medians, and the median of the
per-round ratios view / bare, against the target of at most 1.10. Exit status: 0 when the
target is met, 2 when not, 1 when something broke (a job not finished, a child failed).
"""

from __future__ import annotations

import argparse
import os
import platform
import pty
import resource
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from _common import (
    BenchmarkError,
    Service,
    exit_on_sigterm,
    exit_status,
    fake_service,
    positive_int,
)

import jobpoll

LATENCY = 0.01
CPU_TARGET = 1.10
SIDES = ("bare", "view", "json")
CHILD_TIMEOUT = 600.0

#: The bare side: the command's fan-out and default policy, no view, no output.
BARE = """
import asyncio, sys
from jobpoll import JobsClient, PollPolicy, wait_for_jobs

async def main():
    ids = [line.strip() for line in open(sys.argv[1]) if line.strip()]
    cap = float(sys.argv[2])
    policy = PollPolicy(initial=min(2.0, cap), max_interval=cap, first_contact_grace=10.0)
    async with JobsClient() as client:
        async with wait_for_jobs(client, ids, policy=policy) as results:
            ok = 0
            async for result in results:
                ok += result.ok
    sys.exit(0 if ok == len(ids) else 1)

asyncio.run(main())
"""


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_side(
    side: str, ids_file: Path, service: Service, max_interval: float
) -> tuple[float, float]:
    """Wait on the ids in `ids_file` one way, in a child process: its CPU and wall seconds."""
    env = {
        **os.environ,
        "CDQ_API_KEY": service.api_key,
        "CDQ_BASE_URL": service.base_url,
        "TERM": "xterm-256color",
    }
    if side == "bare":
        command = [sys.executable, "-c", BARE, str(ids_file), str(max_interval)]
    else:
        command = [sys.executable, "-m", "jobpoll", "wait", "-f", str(ids_file)]
        command += ["--max-interval", str(max_interval)]
    before, wall = children_cpu(), time.perf_counter()
    if side == "view":
        status = run_on_terminal(command, env)
    else:
        done = subprocess.run(
            command,
            env=env,
            stdout=subprocess.DEVNULL if side == "bare" else subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
        status = done.returncode
        if status != 0:
            raise BenchmarkError(f"the {side} side exited {status}: {done.stderr.decode()}")
    cpu, wall = children_cpu() - before, time.perf_counter() - wall
    if status != 0:
        raise BenchmarkError(f"the {side} side exited {status}")
    return cpu, wall


def run_on_terminal(command: list[str], env: dict[str, str]) -> int:
    """Run `command` with its standard output on a pseudo-terminal (drained, thrown away)."""
    import fcntl
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))

    def drain() -> None:
        while True:
            try:
                if not os.read(master, 65536):
                    return
            except OSError:  # EIO: the terminal's other side is closed
                return

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        process = subprocess.Popen(
            command, env=env, stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
        )
        os.close(slave)
        try:
            _, err = process.communicate(timeout=CHILD_TIMEOUT)
        finally:
            if process.returncode is None:
                process.kill()
                process.wait()
        if process.returncode != 0:
            raise BenchmarkError(f"the view side exited {process.returncode}: {err.decode()}")
        reader.join(timeout=10)
    finally:
        os.close(master)
    return process.returncode


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="CPU of `jobpoll wait` with its live view against the bare fan-out."
    )
    parser.add_argument("--jobs", type=positive_int, default=2000, help="ids per run")
    parser.add_argument(
        "--job-seconds",
        type=float,
        default=10.0,
        help="how long each job runs (from its first poll)",
    )
    parser.add_argument("--rounds", type=positive_int, default=5, help="rounds of the three sides")
    parser.add_argument(
        "--max-interval",
        type=float,
        default=30.0,
        help="the policy's longest blind delay, both sides (the command's --max-interval)",
    )
    return parser.parse_args(argv)


@exit_status
def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    print(
        f"Python {platform.python_version()}, jobpoll {jobpoll.__version__}, "
        f"{os.cpu_count()} CPUs; {arguments.jobs} jobs of {arguments.job_seconds:g} s, answers "
        f"after {LATENCY * 1000:g} ms, {arguments.rounds} rounds",
        flush=True,
    )
    figures: dict[str, list[float]] = {side: [] for side in SIDES}
    with (
        tempfile.TemporaryDirectory() as folder,
        fake_service(auto_create_duration=arguments.job_seconds, latency=LATENCY) as service,
    ):
        for number in range(arguments.rounds):
            order = SIDES[number % 3 :] + SIDES[: number % 3]
            line = [f"  round {number + 1}:"]
            for side in order:
                ids_file = Path(folder) / f"{side}-{number}.txt"
                ids_file.write_text("".join(f"{uuid.uuid4()}\n" for _ in range(arguments.jobs)))
                cpu, wall = run_side(side, ids_file, service, arguments.max_interval)
                figures[side].append(cpu)
                line.append(f"{side} {cpu:5.2f} s CPU ({wall:4.1f} s wall)")
            ratio = figures["view"][-1] / figures["bare"][-1]
            print(" ".join(line[:1]) + " " + ", ".join(line[1:]) + f"; view / bare {ratio:.3f}")
    medians = {side: statistics.median(values) for side, values in figures.items()}
    ratios = [view / bare for view, bare in zip(figures["view"], figures["bare"], strict=True)]
    json_ratios = [json / bare for json, bare in zip(figures["json"], figures["bare"], strict=True)]
    ratio = statistics.median(ratios)
    print(
        "median CPU: "
        + ", ".join(f"{side} {medians[side]:.2f} s" for side in SIDES)
        + f"; json / bare (median of rounds) {statistics.median(json_ratios):.3f}"
    )
    met = ratio <= CPU_TARGET
    print(
        f"view / bare CPU (median of rounds): {ratio:.3f}  "
        f"target <= {CPU_TARGET:.2f}: {'met' if met else 'NOT met'}"
    )
    return 0 if met else 2


if __name__ == "__main__":
    sys.exit(main())

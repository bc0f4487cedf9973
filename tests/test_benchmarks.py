"""The benchmarks still run (their figures are read by people, never asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"

#: A bound on a hang, never on speed: a tiny run takes seconds alone, but a minute or more
#: measured by coverage beside the suite's other processes on a loaded machine.
BOUND = 240

pytestmark = pytest.mark.timeout(BOUND + 60)


def test_client_benchmark_runs() -> None:
    """A tiny run of bench_client.py completes and prints its verdict line."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_client.py"), "--calls", "20", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=True,
    )
    assert "ratio (median of rounds):" in result.stdout


def test_wait_benchmark_runs() -> None:
    """A tiny run of bench_wait.py completes and prints its summary line."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_wait.py"), "--jobs", "5"],
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=True,
    )
    assert "default / baseline, polls per job and p95 latency (all jobs):" in result.stdout


def test_schedule_benchmark_runs() -> None:
    """A tiny simulation of bench_schedule.py completes, prints the curves per family, the
    promise and the verdicts against plain backoff, and exits 0 (every target met) or 2 (a
    target missed), never 1 (broken)."""
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_schedule.py"),
            *("--jobs", "1", "--seeds", "101", "--tuning-seeds", "1", "--workers", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=False,
    )
    assert result.returncode in (0, 2), result.stderr
    assert "promise (held out): p95 lateness <= L and max lateness <= 3 L" in result.stdout
    assert "against plain backoff (held out" in result.stdout
    for family in ("steady", "random chunks", "long tail", "day-long", "no progress"):
        assert family in result.stdout
    assert "oracle" in result.stdout


def test_fanout_benchmark_runs() -> None:
    """A tiny run of bench_fanout.py completes and prints its figures and verdicts."""
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_fanout.py"),
            *("--jobs", "20", "--job-seconds", "0.5", "--waiting", "200"),
            *("--baseline-waiting", "50"),
            *("--compare-jobs", "10", "--rounds", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=True,
    )
    assert "results lost:            0 (must be 0)" in result.stdout
    assert "fan-out / single, median of rounds:" in result.stdout
    assert "bytes per job:" in result.stdout


#: A soak of a few seconds: two fan-outs of 75 jobs, with every kind of fault and cancellation.
TINY_SOAK = ["--jobs", "150", "--batch", "75", "--cancels", "8", "--seed", "1"]
SOAK_VERDICTS = (
    "jobs submitted:",
    "outcomes received:",
    "outcomes wrong:",
    "errors escaped:",
    "cancellations swallowed:",
    "iterations hung:",
    "requests:",
    "peak in flight:",
    "requests left in flight:",
    "asyncio tasks left:",
    "client connections left open:",
    "file descriptors left:",
    "event loop errors:",
    "warnings:",
    "peak memory:",
    "verdict:",
)


def test_a_tiny_soak_finds_nothing_lost_wrong_escaped_or_left() -> None:
    """A tiny soak runs to its end by itself, prints every figure it judges, and passes: every
    job reported exactly once with its scripted outcome, no error escaping, nothing left.

    It failed before jobpoll survived an HTTP-date with a year out of range ("errors escaped")
    and a second cancellation during the cleanup of the first, or one in an async `on_update`
    ("outcomes received")."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_soak.py"), *TINY_SOAK],
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=False,
    )
    lines = result.stdout.splitlines()
    for verdict in SOAK_VERDICTS:
        assert any(line.startswith(verdict) for line in lines), verdict
    assert "jobs submitted:                   150" in lines
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines[-1] == "verdict: pass"


def test_checkpoint_benchmark_runs() -> None:
    """A tiny run of bench_checkpoint.py completes and prints its verdict on the size."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_checkpoint.py"), "--jobs", "40"],
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=False,
    )
    assert result.returncode in (0, 2), result.stdout + result.stderr
    assert "bytes per pending job:" in result.stdout


def test_scale_benchmark_runs() -> None:
    """A tiny run of bench_scale.py (a few hundred jobs, every loop installed) prints its
    stall, memory and CPU tables, and exits 0 (every target met) or 2 (one missed; at this
    size none is measured but CPU), never 1 (broken)."""
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_scale.py"),
            *("--sizes", "300", "--steady", "0.5", "--steady-max", "1"),
            *("--cpu-calls", "50", "--cpu-rounds", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=False,
    )
    assert result.returncode in (0, 2), result.stderr
    assert "1. Scale:" in result.stdout
    assert "2. CPU per poll against a bare aiohttp GET + json.loads loop" in result.stdout
    assert "asyncio" in result.stdout


def test_cli_benchmark_runs() -> None:
    """A tiny run of bench_cli.py completes and prints its verdict, exiting 0 (met) or 2 (not
    met: at this size the command's start-up weighs), never 1 (broken)."""
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_cli.py"),
            *("--jobs", "20", "--job-seconds", "0.3", "--rounds", "1", "--max-interval", "0.1"),
        ],
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=False,
    )
    assert result.returncode in (0, 2), result.stderr
    assert "view / bare CPU (median of rounds):" in result.stdout


def test_ratelimit_benchmark_runs() -> None:
    """A tiny run of bench_ratelimit.py, the baseline revision beside the working tree, prints
    a case's table and its verdict, and exits 0 (met) or 2 (missed: at this size, and cut
    short, the figures are no measure), never 1 (broken)."""
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_ratelimit.py"),
            *("--case", "fanout-50-b20", "--jobs", "10", "--settle", "1"),
            *("--baseline-cap", "4", "--cap", "8"),
        ],
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=False,
    )
    assert result.returncode in (0, 2), result.stdout + result.stderr
    assert "fanout-50-b20: wait_for_jobs on one JobsClient, 10 jobs" in result.stdout
    assert "baseline ec819c0" in result.stdout
    assert "refused, whole run" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("verdict: ")

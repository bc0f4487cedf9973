"""The benchmarks still run (their figures are read by people, never asserted here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def test_client_benchmark_runs() -> None:
    """A tiny run of bench_client.py completes and prints its verdict line."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_client.py"), "--calls", "20", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "ratio (median of rounds):" in result.stdout


def test_wait_benchmark_runs() -> None:
    """A tiny run of bench_wait.py completes and prints its summary line."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_wait.py"), "--jobs", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "default / baseline, polls per job and p95 latency (all jobs):" in result.stdout


def test_schedule_benchmark_runs() -> None:
    """A tiny simulation of bench_schedule.py completes, prints a table per family and the
    verdicts, and exits 0 (every target met) or 2 (a target missed), never 1 (broken)."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bench_schedule.py"), "--jobs", "5", "--seeds", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode in (0, 2), result.stderr
    assert "target: >= 3x fewer polls than plain backoff" in result.stdout
    for family in ("steady", "slow-fast-slow", "coarse steps", "abrupt end", "no progress"):
        assert family in result.stdout
    assert "oracle" in result.stdout
    assert "fixed " in result.stdout


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
        timeout=120,
        check=True,
    )
    assert "results lost:            0 (must be 0)" in result.stdout
    assert "fan-out / single, median of rounds:" in result.stdout
    assert "bytes per job:" in result.stdout

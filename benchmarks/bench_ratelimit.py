"""Waits against a service's rate limit: accepted rate, share refused and wall time, of the
code as it is and of a baseline revision, measured in the same run.

Run from the repository root (the `saq` case needs the `saq` extra and `redis-server`):

    .venv/bin/python benchmarks/bench_ratelimit.py --quick           # a try, about 2 minutes
    .venv/bin/python benchmarks/bench_ratelimit.py [--case PATTERN ...] [--jobs N] [--seed 1]
        [--baseline REV] [--baseline-cap 60] [--cap SECONDS] [--settle 10] [--rtt 0]
        [--max-rate R] [--no-baseline] [--list]

The service (`_bucket_server.py`, its own process, on loopback) is an API gateway's token
bucket in front of jobpoll's fake service: L requests a second, a burst of B, each request
over it answered 429 with `Retry-After: 1`; the client is not told the limit. A
job ends 2 to 10 s (drawn from the seed and its id) after its first accepted poll. The
clients (`_ratelimit_client.py`) run in processes of their own, with the jobpoll under test
first on their PYTHONPATH: the working tree ("new"), and the library at `--baseline` (today's
behaviour, default ec819c0), extracted with `git archive`. A baseline run is cut after
`--baseline-cap` seconds and its figures are over the run so far, marked "cut".

Cases (`--case` takes names or patterns, e.g. `'fanout-*'`, or `fanout-L-bB` / `lone-L-bB` /
`saq-L-bB` for any limit and burst; `--list` prints them):

- `fanout-L-bB` / `lone-L-bB`: `wait_for_jobs` over the ids on one `JobsClient`, or a
  `wait_for_job` task per id on one client; limits 5, 50 and 500 a second, bursts 1 and 20;
  `max(1000, 20 * L)` jobs, so that the run lasts well past the first 10 s.
- `change`: a fan-out under a limit of 50 a second that halves at 30 s and doubles back at
  60 s; after each change the accepted rate must be back to 0.9 of the new limit within 10 s.
- `two`: two fan-outs in two processes on one limit (50 a second), not coordinated.
- `saq`: three `jobpoll.saq` workers on one Redis and one limit (50 a second); each outcome
  is counted in a plain file. `saq-L-bB`: the same under any limit and burst.

Targets (for the new code; the baseline's figures are printed beside them): accepted rate at
least 0.9 of the limit over the window (0.85 together for `two` and `saq`, and for `two`
neither client under a third of the accepted total), at most 5% of requests refused over the
whole run, a fan-out's wall time within 1.25x of max(accepted polls / limit, longest job),
every job ended ok, every SAQ outcome delivered exactly once. The window (see
`_ratelimit_figures.py`) starts `--settle` seconds after the first request and ends where the
client no longer certainly had a second's worth of polls due at the limit: the tail where
demand falls below the limit is left out. Exit status 2 when a target is missed, 1 when
something broke.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from _common import BenchmarkError, exit_on_sigterm, exit_status, first_line, positive_int
from _ratelimit_figures import Rates, RunFigures, figures
from bench_queue import redis_server

HERE = Path(__file__).parent
ROOT = HERE.parent
SERVER = HERE / "_bucket_server.py"
CLIENT = HERE / "_ratelimit_client.py"
BASELINE = "ec819c0"
START_TIMEOUT = 30.0
#: What a fan-out's or a worker's process may take beyond its cap to report and exit.
GRACE = 60.0

TARGET_RATE = 0.9
TARGET_TOGETHER = 0.85
TARGET_REFUSED = 0.05
TARGET_WALL = 1.25


@dataclass(frozen=True)
class Case:
    """One benchmark case: the clients, the limit and how many jobs."""

    name: str
    kind: str  # fanout, lone, two, saq
    rate: float
    burst: float
    jobs: int
    changes: tuple[tuple[float, float], ...] = ()
    judged: bool = True

    def clients(self) -> tuple[str, ...]:
        return ("a", "b") if self.kind == "two" else ("a",)

    def ideal(self) -> float:
        """About how long a client at the limit takes (2.5 polls a job), in seconds."""
        rates = Rates(((0.0, self.rate), *self.changes))
        return max(rates.time_for(2.5 * self.jobs * len(self.clients())), 12.0)


def matrix(jobs: int | None) -> list[Case]:
    cases = []
    for kind in ("fanout", "lone"):
        for rate in (5, 50, 500):
            for burst in (1, 20):
                count = jobs or max(1000, 20 * rate)
                cases.append(Case(f"{kind}-{rate}-b{burst}", kind, rate, burst, count))
    cases.append(Case("change", "fanout", 50, 20, jobs or 1500, ((30.0, 25.0), (60.0, 50.0))))
    cases.append(Case("two", "two", 50, 20, jobs or 1000))
    cases.append(Case("saq", "saq", 50, 20, jobs or 1000))
    return cases


def ceiling(jobs: int | None) -> Case:
    """Not judged: a fan-out under a limit it never reaches, for what this machine serves."""
    return Case("ceiling", "fanout", 100_000, 100_000, jobs or 10_000, judged=False)


def quick_cases(jobs: int | None) -> list[Case]:
    return [
        Case("fanout-50-b20", "fanout", 50, 20, jobs or 200),
        Case("lone-50-b20", "lone", 50, 20, jobs or 200),
        Case("two", "two", 50, 20, jobs or 150),
        Case("saq", "saq", 50, 20, jobs or 200),
    ]


@dataclass(frozen=True)
class Side:
    """The code under test: a label and the folder put first on the clients' PYTHONPATH."""

    label: str
    path: Path
    cap: float | None  # None: the case's own cap
    #: `max_rate=` for the clients' `JobsClient` and `SaqWaits`; older code has none.
    max_rate: float | None = None


@dataclass
class Run:
    """One side of one case, done."""

    side: Side
    figures: RunFigures
    wall: float
    cut: bool
    outcomes: Counter[str] = field(default_factory=Counter)
    delivered_twice: int = 0
    missing: int = 0


# Processes ------------------------------------------------------------------------------


def side_env(side: Side) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(side.path)
    return env


@contextmanager
def bucket_server(
    case: Case, options: argparse.Namespace, record: Path
) -> Iterator[dict[str, str]]:
    """The rate-limited service in its own process; stopped (and its record written) after."""
    command = [sys.executable, str(SERVER), "--rate", str(case.rate), "--burst", str(case.burst)]
    command += ["--seed", str(options.seed), "--rtt", str(options.rtt), "--record", str(record)]
    for at, rate in case.changes:
        command += ["--change", f"{at}={rate}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        yield json.loads(first_line(process, "the rate-limited service", START_TIMEOUT))
        process.send_signal(signal.SIGTERM)
        if process.wait(timeout=GRACE) != 0:
            raise BenchmarkError(f"the rate-limited service exited with {process.returncode}")
    finally:
        _stop(process)


def _stop(*processes: subprocess.Popen[Any]) -> None:
    """SIGTERM to each process still running, then wait for each (SIGKILL after 10 s)."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def client_command(mode: str, service: dict[str, str], side: Side) -> list[str]:
    command = [sys.executable, str(CLIENT), mode, "--base-url", service["base_url"]]
    command += ["--api-key", service["api_key"]]
    if side.max_rate is not None:
        command += ["--max-rate", str(side.max_rate)]
    return command


def job_ids(case: Case, client: str, seed: int) -> list[str]:
    """The same ids on both sides (so the same durations): UUIDs drawn from the seed."""
    draw = random.Random(f"{seed}/{case.name}/{client}")
    return [str(uuid.UUID(int=draw.getrandbits(128), version=4)) for _ in range(case.jobs)]


def run_waits(
    case: Case,
    side: Side,
    cap: float,
    service: dict[str, str],
    files: dict[str, Path],
    options: argparse.Namespace,
) -> list[dict[str, Any]]:
    """The fan-out(s) or lone waits, each in its own process, at once; what each reported."""
    mode = "lone" if case.kind == "lone" else "fanout"
    processes = []
    for client in case.clients():
        command = [*client_command(mode, service, side), "--ids", str(files[client])]
        command += ["--cap", str(cap)]
        processes.append(
            subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=side_env(side))
        )
    reports = []
    try:
        for process in processes:
            out, _ = process.communicate(timeout=cap + GRACE)
            if process.returncode != 0 or not out.strip():
                raise BenchmarkError(f"a {mode} client exited with {process.returncode}")
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        _stop(*processes)
    return reports


def run_saq(
    case: Case,
    side: Side,
    cap: float,
    service: dict[str, str],
    ids_file: Path,
    options: argparse.Namespace,
) -> dict[str, Any]:
    """Three SAQ workers of one queue, the ids submitted, every outcome counted in a file."""
    queue = "ratelimit" + uuid.uuid4().hex[:8]
    outcomes = ids_file.with_name("outcomes")
    outcomes.touch()
    shared = ["--redis", options.redis_url, "--queue", queue]
    workers = []
    try:
        for index in range(3):
            command = client_command("saq-worker", service, side) + shared
            command += ["--name", f"w{index}", "--outcomes", str(outcomes)]
            workers.append(subprocess.Popen(command, env=side_env(side)))
        start = time.monotonic()
        submit = client_command("saq-submit", service, side) + shared + ["--ids", str(ids_file)]
        submitted = subprocess.run(
            submit, env=side_env(side), timeout=GRACE, capture_output=True, text=True, check=False
        )
        if submitted.returncode != 0:
            raise BenchmarkError(f"submitting the waits failed: {submitted.stderr[-2000:]}")
        wanted = case.jobs
        while True:
            lines = outcomes.read_text().split()
            if len(set(lines)) >= wanted or time.monotonic() - start > cap:
                break
            if any(worker.poll() is not None for worker in workers):
                raise BenchmarkError("a SAQ worker exited before the waits ended")
            time.sleep(0.2)
        end = time.monotonic()
    finally:
        _stop(*workers)
    lines = outcomes.read_text().split()
    return {
        "start": start,
        "end": end,
        "cut": len(set(lines)) < wanted,
        "outcomes": {"delivered": len(set(lines))},
        "twice": len(lines) - len(set(lines)),
        "missing": wanted - len(set(lines)),
        "jobpoll": json.loads(submitted.stdout)["jobpoll"],
    }


def run_side(case: Case, side: Side, options: argparse.Namespace) -> Run:
    """One side of a case, from a fresh service to its figures."""
    cap = side.cap or options.cap or max(60.0, 3 * case.ideal())
    clients = {client: job_ids(case, client, options.seed) for client in case.clients()}
    with tempfile.TemporaryDirectory(prefix="bench_ratelimit-") as folder:
        files = {client: Path(folder) / f"ids-{client}" for client in clients}
        for client, ids in clients.items():
            files[client].write_text("\n".join(ids) + "\n")
        record_path = Path(folder) / "record.json"
        with bucket_server(case, options, record_path) as service:
            if case.kind == "saq":
                reports = [run_saq(case, side, cap, service, files["a"], options)]
            else:
                reports = run_waits(case, side, cap, service, files, options)
        record = json.loads(record_path.read_text())
    if record["origin"] is None:
        raise BenchmarkError(f"{case.name}, {side.label}: no request reached the service")
    for report in reports:
        if not Path(report["jobpoll"]).is_relative_to(side.path):
            raise BenchmarkError(f"{side.label} ran the jobpoll at {report['jobpoll']}")
    start = min(report["start"] for report in reports)
    end = max(report["end"] for report in reports)
    return Run(
        side=side,
        figures=figures(record, clients, settle=options.settle, end=end - record["origin"]),
        wall=end - start,
        cut=any(report["cut"] for report in reports),
        outcomes=sum((Counter(report["outcomes"]) for report in reports), Counter()),
        delivered_twice=sum(report.get("twice", 0) for report in reports),
        missing=sum(report.get("missing", 0) for report in reports),
    )


# Figures and verdicts ---------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """A line of a case's table: how a run shows, the target, and whether the new code met
    it (None: not judged)."""

    name: str
    show: Callable[[Run], str]
    target: str = ""
    met: Callable[[Run], bool | None] = lambda run: None


def accepted_share(run: Run) -> str:
    share, window = run.figures.accepted_share, run.figures.window
    if share is None or window is None:
        return "no window"
    return f"{share:.2f} ({window[0]:.0f}-{window[1]:.0f} s)"


def at_least(target: float) -> Callable[[Run], bool | None]:
    """Met when the accepted share reaches `target`; not judged without a window."""

    def met(run: Run) -> bool | None:
        share = run.figures.accepted_share
        return None if share is None else share >= target

    return met


def recovery(index: int) -> tuple[Callable[[Run], str], Callable[[Run], bool | None]]:
    """How a run came back after the `index`-th change of the limit."""

    def value(run: Run) -> float | None:
        found = run.figures.recoveries[index : index + 1]
        return found[0][3] if found else None

    def show(run: Run) -> str:
        share = value(run)
        return "n/a" if share is None else f"{share:.2f}"

    def met(run: Run) -> bool | None:
        share = value(run)  # None: the demand fell below the limit before (not judged)
        return None if share is None else share >= TARGET_RATE

    return show, met


def smaller_share(run: Run) -> float | None:
    counts = run.figures.accepted_in_window
    whole = sum(counts.values())
    return min(counts.values()) / whole if whole else None


def wall(run: Run) -> str:
    bound = max(run.figures.bound, run.figures.longest_job)
    if run.cut:
        return f"cut at {run.wall:.0f} s"
    return f"{run.wall / bound:.2f}x ({run.wall:.0f} s / {bound:.0f} s)"


def ended(run: Run) -> str:
    others = ", ".join(f"{kind} {n}" for kind, n in sorted(run.outcomes.items()) if kind != "ok")
    return f"{run.outcomes.get('ok', 0)}" + (f" ({others})" if others else "")


def service_load(run: Run) -> str:
    server = run.figures.server
    per_request = 1e6 * server["cpu"] / max(run.figures.requests, 1)
    return f"{server['cpu'] / server['wall']:.0%} of a core, {per_request:.0f} us a request"


def service_lag(run: Run) -> str:
    server = run.figures.server
    return f"{1000 * server['lag_p99']:.0f} ms, {1000 * server['lag_max']:.0f} ms"


def case_figures(case: Case, settle: float) -> list[Figure]:
    """The lines of a case's table, each with its target."""
    return [
        *rate_figures(case, settle),
        *outcome_figures(case),
        Figure("most accepted in a second", lambda run: f"{run.figures.peak_accepted}"),
        Figure("service CPU", service_load),
        Figure("service loop lag p99, max", service_lag),
    ]


def rate_figures(case: Case, settle: float) -> list[Figure]:
    together = case.kind in ("two", "saq")
    target = TARGET_TOGETHER if together else TARGET_RATE
    lines = [
        Figure(
            "accepted / limit, window" + (", together" if together else ""),
            accepted_share,
            "" if case.changes else f">= {target:.2f}",
            (lambda run: None) if case.changes else at_least(target),
        )
    ]
    for index, (at, rate) in enumerate(case.changes):
        show, met = recovery(index)
        name = f"accepted / {rate:g}/s from {at + settle:g} s"
        lines.append(Figure(name, show, f">= {TARGET_RATE:.2f}", met))
    if case.kind == "two":
        lines.append(
            Figure(
                "smaller client's share, window",
                lambda run: "n/a" if (share := smaller_share(run)) is None else f"{share:.2f}",
                ">= 0.33",
                lambda run: None if (share := smaller_share(run)) is None else 3 * share >= 1,
            )
        )
    return lines


def outcome_figures(case: Case) -> list[Figure]:
    total = case.jobs * len(case.clients())
    lines = [
        Figure(
            "refused, whole run",
            lambda run: f"{run.figures.refused_share:.1%} of {run.figures.requests}",
            f"<= {TARGET_REFUSED:.0%}",
            lambda run: run.figures.refused_share <= TARGET_REFUSED,
        )
    ]
    if case.kind in ("fanout", "lone") and not case.changes:
        lines.append(
            Figure(
                "wall / max(polls/limit, job)",
                wall,
                f"<= {TARGET_WALL:.2f}x",
                lambda run: (
                    not run.cut
                    and run.wall <= TARGET_WALL * max(run.figures.bound, run.figures.longest_job)
                ),
            )
        )
    if case.kind == "saq":
        lines.append(
            Figure(
                "outcomes in, twice",
                lambda run: f"{run.outcomes.get('delivered', 0)}, {run.delivered_twice}",
                f"{total}, 0",
                lambda run: not run.cut and run.missing == 0 and run.delivered_twice == 0,
            )
        )
    else:
        lines.append(
            Figure(
                "jobs ended ok", ended, f"{total}", lambda run: run.outcomes.get("ok", 0) == total
            )
        )
    return lines


def describe(case: Case) -> str:
    what = {
        "fanout": "wait_for_jobs on one JobsClient",
        "lone": "a wait_for_job task per job on one JobsClient",
        "two": "two wait_for_jobs in two processes",
        "saq": "three jobpoll.saq workers on one Redis",
    }[case.kind]
    limit = f"limit {case.rate:g}/s"
    for at, rate in case.changes:
        limit += f", {rate:g}/s from {at:g} s"
    count = f"{case.jobs} jobs" + (" each" if case.kind == "two" else "")
    return f"{case.name}: {what}, {count}; {limit}, burst {case.burst:g}"


def print_case(case: Case, settle: float, baseline: Run | None, new: Run) -> bool:
    """Print a case's table; whether the new code met every target."""

    def head(run: Run | None) -> str:
        return "-" if run is None else run.side.label + (" (cut)" if run.cut else "")

    table = [("", head(baseline), head(new), "target", "")]
    verdicts = []
    for figure in case_figures(case, settle):
        met = figure.met(new) if case.judged else None
        verdicts.append(met)
        old = "-" if baseline is None else figure.show(baseline)
        verdict = "" if met is None else ("met" if met else "MISSED")
        table.append((figure.name, old, figure.show(new), figure.target, verdict))
    widths = [max(len(row[column]) for row in table) for column in range(5)]
    print(describe(case))
    for row in table:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  " + "  ".join(cells).rstrip())
    print(flush=True)
    return all(met is not False for met in verdicts)


# The program --------------------------------------------------------------------------------


@contextmanager
def baseline_tree(revision: str) -> Iterator[Path]:
    """The library at `revision`, extracted into a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bench_ratelimit-baseline-") as folder:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", revision, "jobpoll"],
            capture_output=True,
            check=False,
        )
        if archive.returncode != 0:
            raise BenchmarkError(f"git archive {revision}: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
        yield Path(folder)


def chosen(options: argparse.Namespace) -> list[Case]:
    """The cases asked for: by name or pattern, or named `fanout-L-bB` / `lone-L-bB` /
    `saq-L-bB` for any limit L and burst B."""
    cases = quick_cases(options.jobs) if options.quick else matrix(options.jobs)
    if not options.case:
        return cases
    known = [*matrix(options.jobs), ceiling(options.jobs)]
    picked = []
    for pattern in options.case:
        found = [case for case in known if fnmatch.fnmatchcase(case.name, pattern)]
        made = re.fullmatch(r"(fanout|lone|saq)-([0-9.]+)-b([0-9.]+)", pattern)
        if not found and made:
            kind, rate, burst = made[1], float(made[2]), float(made[3])
            found = [Case(pattern, kind, rate, burst, options.jobs or max(1000, int(20 * rate)))]
        if not found:
            raise BenchmarkError(f"no case matches {pattern!r}; --list shows them")
        picked += [case for case in found if case not in picked]
    return picked


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", default=[], help="a case name or pattern")
    parser.add_argument("--quick", action="store_true", help="a short try: four small cases")
    parser.add_argument("--jobs", type=positive_int, help="jobs per client (default: per case)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--baseline", default=BASELINE, metavar="REV")
    parser.add_argument("--baseline-cap", type=float, metavar="SECONDS")
    parser.add_argument("--cap", type=float, metavar="SECONDS", help="cut the new code's runs")
    parser.add_argument("--settle", type=float, metavar="SECONDS")
    parser.add_argument("--rtt", type=float, default=0.0, metavar="SECONDS")
    parser.add_argument("--max-rate", type=float, help="JobsClient(max_rate=) of the new code")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--list", action="store_true", help="list the cases and their lengths")
    options = parser.parse_args(argv)
    if options.baseline_cap is None:
        options.baseline_cap = 12.0 if options.quick else 60.0
    if options.settle is None:
        options.settle = 5.0 if options.quick else 10.0
    if options.quick and options.cap is None:
        options.cap = 30.0
    return options


def list_cases(cases: Sequence[Case], options: argparse.Namespace) -> None:
    total = 0.0
    for case in cases:
        guess = min(case.ideal(), options.cap or 1e9) + (
            0 if options.no_baseline else options.baseline_cap
        )
        total += guess
        print(f"{describe(case)}  (about {guess:.0f} s)")
    print(f"about {total / 60:.0f} minutes in all, at the limit (the new code's runs uncut)")


def print_header(options: argparse.Namespace, baseline: Side | None) -> None:
    cut = (
        ""
        if baseline is None
        else f"; baseline {options.baseline}, cut at {options.baseline_cap:g} s"
    )
    print(
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}; new: the working"
        f" tree{cut}; rtt {options.rtt:g} s, seed {options.seed}"
        + ("" if options.max_rate is None else f", max_rate {options.max_rate:g} (new code)")
    )
    print(
        f"window: from {options.settle:g} s after the first request to the last moment the"
        " client certainly had a second's worth of polls at the limit due (jobs not polled yet,"
        " or ended and not yet seen ended); the tail after it, where demand falls below the"
        " limit, is left out",
        flush=True,
    )
    print()


@exit_status
def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    options = parse(argv)
    cases = chosen(options)
    if options.list:
        list_cases(cases, options)
        return 0
    new = Side("new (working tree)", ROOT, None, options.max_rate)
    missed = []
    with ExitStack() as stack:
        baseline = None
        if not options.no_baseline:
            folder = stack.enter_context(baseline_tree(options.baseline))
            baseline = Side(f"baseline {options.baseline}", folder, options.baseline_cap)
        options.redis_url = None
        if any(case.kind == "saq" for case in cases):
            options.redis_url = stack.enter_context(redis_server())
        print_header(options, baseline)
        for case in cases:
            old = None if baseline is None else run_side(case, baseline, options)
            now = run_side(case, new, options)
            if not print_case(case, options.settle, old, now):
                missed.append(case.name)
    print(f"verdict: {'FAIL (' + ', '.join(missed) + ')' if missed else 'pass'}")
    return 2 if missed else 0


if __name__ == "__main__":
    sys.exit(main(None))

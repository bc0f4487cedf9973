"""The figures of bench_ratelimit.py, read from what the rate-limited service recorded
(`_bucket_server.py`): every request's time and whether it was accepted, each job's first
accepted request and duration, and the rates in force. Times are seconds after the service's
first request.

The accepted rate is judged over a window: from `settle` seconds on, while the client
certainly had more polls due than the limit allows in a second. A poll is certainly due for a
job not polled yet (a first poll is due at once), and for a job that has ended and whose end
no accepted poll has seen yet. Those are a lower bound on what the client wants to send (its
schedule may want more polls of running jobs), so inside the window the client had at least a
second's worth of work at the limit waiting; after its last moment comes the tail, where
demand falls below the limit and no client could keep the limit busy.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: The backlog that puts a moment in the window: this many seconds of polls at the limit.
BACKLOG_SECONDS = 1.0


@dataclass(frozen=True)
class Rates:
    """The limit over time: `(from, rate)` steps, the first from 0."""

    steps: tuple[tuple[float, float], ...]

    def at(self, time: float) -> float:
        index = bisect.bisect_right([start for start, _ in self.steps], time) - 1
        return self.steps[max(index, 0)][1]

    def integral(self, start: float, end: float) -> float:
        """Requests the limit allows from `start` to `end`."""
        total = 0.0
        bounds = [*self.steps[1:], (float("inf"), 0.0)]
        for (begin, rate), (finish, _) in zip(self.steps, bounds, strict=True):
            low, high = max(begin, start), min(finish, end)
            if high > low:
                total += rate * (high - low)
        return total

    def time_for(self, requests: float) -> float:
        """How long the limit takes to allow `requests`, from 0."""
        elapsed, left = 0.0, requests
        bounds = [*self.steps[1:], (float("inf"), 0.0)]
        for (begin, rate), (finish, _) in zip(self.steps, bounds, strict=True):
            span = finish - begin
            if rate * span >= left:
                return elapsed + left / rate
            elapsed, left = elapsed + span, left - rate * span
        return elapsed


@dataclass
class RunFigures:
    """What one run (a client or clients, one side) did against the limit."""

    requests: int
    accepted: int
    refused: int
    window: tuple[float, float] | None
    #: Accepted in the window, by client (the key of its ids).
    accepted_in_window: dict[str, int]
    allowed_in_window: float
    #: Accepted rate / limit over `[change + settle, next change)`, per change of the rate.
    recoveries: list[tuple[float, float, float, float | None]] = field(default_factory=list)
    #: Seconds the limit needed for the polls accepted, and the longest job.
    bound: float = 0.0
    longest_job: float = 0.0
    #: The most requests accepted in one second (whole seconds after the first request).
    peak_accepted: int = 0
    server: dict[str, float] = field(default_factory=dict)

    @property
    def accepted_share(self) -> float | None:
        if self.window is None or not self.allowed_in_window:
            return None
        return sum(self.accepted_in_window.values()) / self.allowed_in_window

    @property
    def refused_share(self) -> float:
        return self.refused / self.requests if self.requests else 0.0


def figures(
    record: Mapping[str, Any],
    clients: Mapping[str, Sequence[str]],
    *,
    settle: float,
    end: float,
) -> RunFigures:
    """The figures of a run that ended `end` seconds after the first request (the last
    outcome, or the cut), its job ids by client."""
    requests = [(t, ok, job_id) for t, ok, job_id in record["requests"] if t <= end]
    rates = Rates(tuple((float(at), float(rate)) for at, rate in record["rates"]))
    jobs = {job_id: (first, duration) for job_id, (first, duration) in record["jobs"].items()}
    all_ids = [job_id for ids in clients.values() for job_id in ids]
    window = _window(_due_steps(requests, jobs, all_ids), rates, settle, end)
    accepted = sum(ok for _, ok, _ in requests)
    per_second = Counter(int(t) for t, ok, _ in requests if ok)
    return RunFigures(
        requests=len(requests),
        accepted=accepted,
        refused=len(requests) - accepted,
        window=window,
        accepted_in_window=_accepted_by_client(requests, clients, window),
        allowed_in_window=0.0 if window is None else rates.integral(*window),
        recoveries=_recoveries(requests, rates, settle, window),
        bound=rates.time_for(accepted),
        longest_job=max((duration for _, duration in jobs.values()), default=0.0),
        peak_accepted=max(per_second.values(), default=0),
        server={key: float(record[key]) for key in ("cpu", "wall", "lag_p99", "lag_max")},
    )


def _accepted_by_client(
    requests: Iterable[tuple[float, int, str]],
    clients: Mapping[str, Sequence[str]],
    window: tuple[float, float] | None,
) -> dict[str, int]:
    counts = dict.fromkeys(clients, 0)
    if window is None:
        return counts
    low, high = window
    client_of = {job_id: name for name, ids in clients.items() for job_id in ids}
    for t, ok, job_id in requests:
        if ok and low <= t < high and job_id in client_of:
            counts[client_of[job_id]] += 1
    return counts


def _due_steps(
    requests: Iterable[tuple[float, int, str]],
    jobs: Mapping[str, tuple[float, float]],
    ids: Sequence[str],
) -> list[tuple[float, int]]:
    """The polls certainly due, as `(time, count from then on)` steps."""
    seen: dict[str, float] = {}
    for t, ok, job_id in requests:
        if ok and job_id in jobs and job_id not in seen and t >= sum(jobs[job_id]):
            seen[job_id] = t
    changes: list[tuple[float, int]] = [(0.0, len(ids))]
    for job_id in ids:
        if job_id not in jobs:
            continue  # never polled: due from 0 to the end
        first, duration = jobs[job_id]
        changes.append((first, -1))
        changes.append((first + duration, +1))
        if job_id in seen:
            changes.append((seen[job_id], -1))
    changes.sort()
    steps: list[tuple[float, int]] = []
    due = 0
    for t, delta in changes:
        due += delta
        if steps and steps[-1][0] == t:
            steps[-1] = (t, due)
        else:
            steps.append((t, due))
    return steps


def _window(
    steps: Sequence[tuple[float, int]], rates: Rates, settle: float, end: float
) -> tuple[float, float] | None:
    """From `settle` to the last moment the due polls were a backlog at the limit."""
    last = None
    bounds = [*(t for t, _ in steps[1:]), end]
    for (start, due), finish in zip(steps, bounds, strict=True):
        if finish > settle and start < end and due >= rates.at(start) * BACKLOG_SECONDS:
            last = min(finish, end)
    if last is None or last <= settle:
        return None
    return settle, last


def _recoveries(
    requests: Sequence[tuple[float, int, str]],
    rates: Rates,
    settle: float,
    window: tuple[float, float] | None,
) -> list[tuple[float, float, float, float | None]]:
    """For each change of the rate: `(from, to, new rate, accepted / limit)` over the time
    from `settle` after the change to the next change, within the window (None: empty)."""
    out: list[tuple[float, float, float, float | None]] = []
    if len(rates.steps) < 2:
        return out
    bounds = [*(t for t, _ in rates.steps[2:]), float("inf")]
    for (change, rate), following in zip(rates.steps[1:], bounds, strict=True):
        low = change + settle
        high = following if window is None else min(following, window[1])
        share = None
        if window is not None and high > low:
            accepted = sum(1 for t, ok, _ in requests if ok and low <= t < high)
            share = accepted / rates.integral(low, high)
        out.append((low, high, rate, share))
    return out

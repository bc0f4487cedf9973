"""`jobpoll demo`: a dozen scripted jobs of an embedded fake service, waited for as `jobpoll
wait` does, then a check that each ended as scripted and that a burst of 503s was ridden out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobpoll._board import Board
from jobpoll._client import JobsClient
from jobpoll._output import Output, say
from jobpoll._policy import PollPolicy
from jobpoll._view import JsonLines, make_view
from jobpoll._wait_command import wait_with_view
from jobpoll.testing._rules import Scenario
from jobpoll.testing._scenario import build_scenario
from jobpoll.testing._service import ScriptedService

#: Each demo job: its id, its rule (seconds at speed 1), and whether it should succeed.
DEMO_JOBS: list[tuple[str, dict[str, Any], bool]] = [
    ("demo-01-quick", {"duration": 2}, True),
    ("demo-02-steady", {"duration": 8}, True),
    ("demo-03-slow-start", {"duration": 10, "shape": "ease-in"}, True),
    ("demo-04-slow-finish", {"duration": 10, "shape": "ease-out"}, True),
    ("demo-05-queued-first", {"duration": 9, "queued": 4}, True),
    ("demo-06-steps-of-25", {"duration": 8, "shape": "steps-25"}, True),
    ("demo-07-no-progress", {"duration": 6, "shape": "none"}, True),
    ("demo-08-long", {"duration": 14}, True),
    ("demo-09-fails", {"duration": 7, "outcome": "FAILED", "reach": 40}, False),
    ("demo-10-dies", {"duration": 9, "shape": "ease-out", "outcome": "DIED", "reach": 60}, False),
    ("demo-11-archived", {"duration": 5, "outcome": "ARCHIVED"}, True),
    ("demo-12-progress-as-text", {"duration": 6, "progress_as_string": True}, True),
]
#: The 503 burst: this many answers in a row from this many seconds after the start, each
#: with a Retry-After. Counted rather than timed, so that a slow machine cannot miss it.
BURST_AT, BURST_TIMES, BURST_RETRY_AFTER = 3.0, 4, 0.5
#: The most the demo may take, at any speed: it is designed to take about 15 s at speed 1.
DEMO_TIMEOUT = 28.0


async def run_demo(
    speed: float, out: Output, *, as_json: bool, stopped_with: Callable[[], int]
) -> int:
    """Run the demo `speed` times faster than designed; 0 when it ran as designed, else 1."""
    policy = PollPolicy(initial=0.25 / speed, max_interval=1.0 / speed)
    board = Board([job_id for job_id, _, _ in DEMO_JOBS], clock=policy.clock)
    async with ScriptedService(demo_scenario(speed)) as service:
        title = (
            f"jobpoll demo: {len(DEMO_JOBS)} jobs at {service.base_url}"
            f" ({BURST_TIMES} answers of 503 from {BURST_AT / speed:g} s)"
        )
        view = make_view(out, board, as_json=as_json, quiet=False, heartbeat=5.0, title=title)
        client = JobsClient(service.api_key, base_url=service.base_url)
        await wait_with_view(
            client, board, policy, view, timeout=DEMO_TIMEOUT, stopped_with=stopped_with
        )
        throttled = sum(1 for request in service.recent_requests if request.http_status == 503)
    wrong = [
        job_id
        for job_id, _, succeeds in DEMO_JOBS
        if (result := board.rows[job_id].result) is None or result.ok is not succeeds
    ]
    return _verdict(out, as_json=isinstance(view, JsonLines), wrong=wrong, throttled=throttled)


def demo_scenario(speed: float) -> Scenario:
    """The demo's jobs and its burst of 503s, every time divided by `speed`."""
    jobs = [(job_id, {"match": job_id, **rule}) for job_id, rule, _ in DEMO_JOBS]
    for _, rule in jobs:
        for key in ("duration", "queued"):
            if key in rule:
                rule[key] = rule[key] / speed
    burst = {
        "kind": 503,
        "at": BURST_AT / speed,
        "times": BURST_TIMES,
        "retry_after": BURST_RETRY_AFTER / speed,
    }
    return build_scenario(None, source="demo", jobs=jobs, faults=[("503 burst", burst)])


def _verdict(out: Output, *, as_json: bool, wrong: list[str], throttled: int) -> int:
    designed = not wrong and throttled > 0
    if as_json:
        out.write_json(
            {"event": "demo", "asDesigned": designed, "throttled": throttled, "wrong": wrong}
        )
    elif designed:
        out.write(
            f"The demo ran as designed: every job ended as scripted, and {throttled} answers"
            " of 503 were ridden out.\n"
        )
        out.flush()
    if designed:
        return 0
    what = (
        f"jobs ended otherwise than scripted: {', '.join(wrong)}"
        if wrong
        else "the burst of 503 answers was not met"
    )
    say(f"jobpoll demo: the demo did not run as designed: {what}")
    return 1

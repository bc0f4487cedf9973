"""`jobpoll demo`: a dozen jobs of an embedded fake service, waited for as `jobpoll wait` does.

The jobs are scripted with the rules of `jobpoll fake-server` (so the demo also shows what
the fake can play): different lengths and shapes of progress, one that fails, one that dies,
one archived, one reporting its progress as a string as the service's own example does, and
a burst of 503 answers with `Retry-After` that the wait rides out. The demo checks that each
job ended as scripted and that the burst was met: its status is 0 when it ran as designed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from jobpoll._board import Board
from jobpoll._client import JobsClient
from jobpoll._output import Output, say
from jobpoll._policy import PollPolicy
from jobpoll._view import JsonLines, View
from jobpoll.testing._rules import Scenario
from jobpoll.testing._scenario import build_scenario
from jobpoll.testing._service import ScriptedService

__all__ = ["DEMO_JOBS", "demo_scenario", "run_demo"]

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

Waiter = Callable[..., Awaitable[int]]


async def run_demo(
    speed: float, make_view: Callable[[Board, str], View], wait: Waiter, out: Output
) -> int:
    """Run the demo `speed` times faster than designed; 0 when it ran as designed, else 1.

    Args:
        speed: how many times faster than at speed 1 (every time divided by it).
        make_view: the view of the wait, given the board and a title.
        wait: `jobpoll._watch.wait_with_view`, with the command loop's stop.
        out: where the verdict goes, after the view.
    """
    scenario = demo_scenario(speed)
    policy = PollPolicy(initial=0.25 / speed, max_interval=1.0 / speed)
    shown: list[tuple[Board, View]] = []
    async with ScriptedService(scenario) as service:
        title = (
            f"jobpoll demo: {len(DEMO_JOBS)} jobs at {service.base_url}"
            f" ({BURST_TIMES} answers of 503 from {BURST_AT / speed:g} s)"
        )

        def view(board: Board) -> View:
            shown.append((board, make_view(board, title)))
            return shown[-1][1]

        client = JobsClient(service.api_key, base_url=service.base_url)
        await wait(
            client, [job_id for job_id, _, _ in DEMO_JOBS], policy, view, timeout=DEMO_TIMEOUT
        )
        throttled = sum(1 for request in service.recent_requests if request.http_status == 503)
    ((board, view_shown),) = shown
    wrong = [
        job_id
        for job_id, _, succeeds in DEMO_JOBS
        if (result := board.rows[job_id].result) is None or result.ok is not succeeds
    ]
    return _verdict(
        out, as_json=isinstance(view_shown, JsonLines), wrong=wrong, throttled=throttled
    )


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
    """Say whether the demo ran as designed (a JSON line, or a sentence), and its status."""
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

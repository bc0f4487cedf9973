"""Checkpoints: a wait saved part-way goes on where it left off, here or in a fresh process,
and a checkpoint that is not one is a `CheckpointError`, never a silent restart."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import math
import random
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
import pytest
from conftest import refusing_url
from hypothesis import given, settings
from hypothesis import strategies as st
from support import BlocksOnce, add_mixed_jobs, until

from jobpoll import (
    CheckpointError,
    ConfigurationError,
    Job,
    JobFailedError,
    JobPollError,
    JobResult,
    JobsClient,
    JobStatus,
    JobsWait,
    JobWait,
    PollPolicy,
    TransportError,
    WaitTimeout,
    wait_for_job,
    wait_for_jobs,
)
from jobpoll._checkpoint import job_checkpoint, resume_job
from jobpoll._pace import Pace
from jobpoll._rules import Rules
from jobpoll._state import JobState, PaceState
from jobpoll.testing import FakeJobsService, HttpError, Patch, RateLimit, Slow, VirtualClock

WORKER = Path(__file__).parent / "resume_worker.py"


def policy_of(clock: VirtualClock, **options: Any) -> PollPolicy:
    """A policy in virtual time whose checkpoints are in virtual UTC too, and repeat exactly."""
    return PollPolicy(
        clock=clock,
        sleep=clock.sleep,
        wall_clock=clock.wall,
        rng=random.Random(7).random,
        **options,
    )


async def checkpoint_after(
    client: JobsClient, job_id: str, policy: PollPolicy, snapshots: int
) -> dict[str, Any]:
    """Iterate a wait for `snapshots` snapshots, then checkpoint it, through JSON."""
    wait = wait_for_job(client, job_id, policy=policy, timeout=7200)
    seen = 0
    async for _job in wait:
        seen += 1
        if seen == snapshots:
            break
    loaded: dict[str, Any] = json.loads(json.dumps(wait.checkpoint()))
    return loaded


def seconds_between(earlier: str, later: str) -> float:
    """Seconds from one ISO 8601 UTC time of a checkpoint to another."""
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


async def first_sleep(wait: Any, clock: VirtualClock) -> float:
    """How long a resumed wait sleeps before its first poll (0 for none)."""
    before = len(clock.sleeps)
    await anext(wait)
    return clock.sleeps[before] if len(clock.sleeps) > before else 0.0


async def test_resumed_wait_goes_on_where_it_left_off(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A resumed wait sends nothing at once: its first poll comes when it was due, and it
    ends as an uninterrupted wait of the same job does, with as many polls."""
    policy = policy_of(clock, jitter=0.0)
    alone_id = service.add_job(duration=900)
    alone = wait_for_job(client, alone_id, policy=policy, timeout=7200)
    await alone
    alone_time = clock.now - clock.start

    clock.now = clock.start
    job_id = service.add_job(duration=900)
    saved = await checkpoint_after(client, job_id, policy, 4)
    assert saved["version"] == 3
    assert saved["job_id"] == job_id
    assert saved["deadline"] == "2026-01-01T02:00:00Z"
    polls_before = service.request_count(job_id)
    assert saved["polls"] == polls_before
    sleeps_before = len(clock.sleeps)

    resumed = wait_for_job(client, job_id, policy=policy, resume=saved)
    assert service.request_count(job_id) == polls_before  # restored without polling
    job = await resumed
    assert job.succeeded
    first_sleep = clock.sleeps[sleeps_before]
    due = saved["next_poll_at"].replace("Z", "+00:00")
    taken = saved["taken_at"].replace("Z", "+00:00")
    expected = (datetime.fromisoformat(due) - datetime.fromisoformat(taken)).total_seconds()
    assert first_sleep == pytest.approx(expected, abs=1e-5)
    assert first_sleep > 0
    assert resumed.polls == service.request_count(job_id)
    assert resumed.polls <= alone.polls + 1
    assert clock.now - clock.start == pytest.approx(alone_time, abs=1e-3)


async def test_time_between_processes_counts(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """Time passed between the checkpoint and the resume shortens the first sleep; once the
    poll is overdue it goes out at once, and a deadline passed meanwhile is a `WaitTimeout`
    without a poll."""
    policy = policy_of(clock)
    job_id = service.add_job(duration=3600)
    saved = await checkpoint_after(client, job_id, policy, 3)
    taken = clock.now
    delay = seconds_between(saved["taken_at"], saved["next_poll_at"])
    assert delay > 1
    clock.advance(1)  # the worker was down for a second
    shortened = wait_for_job(client, job_id, policy=policy, resume=saved)
    assert await first_sleep(shortened, clock) == pytest.approx(delay - 1, abs=1e-5)
    clock.now = taken + delay + 1  # and now past the poll's time
    overdue = wait_for_job(client, job_id, policy=policy, resume=saved)
    assert await first_sleep(overdue, clock) == 0

    clock.advance(8000)  # down for long: the deadline has passed
    resumed = wait_for_job(client, job_id, policy=policy, resume=saved)
    before = service.request_count(job_id)
    with pytest.raises(TimeoutError):
        await resumed
    assert service.request_count(job_id) == before


async def test_checkpoint_of_a_finished_wait_resumes_to_its_outcome(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A wait that saw its job end resumes to the same outcome without polling; one that
    ended with an error cannot be checkpointed."""
    policy = policy_of(clock)
    job_id = service.add_job(duration=30, final_status="FAILED")
    wait = wait_for_job(client, job_id, policy=policy)
    with pytest.raises(JobFailedError):
        await wait
    saved = wait.checkpoint()
    assert saved["next_poll_at"] is None
    before = service.request_count(job_id)
    with pytest.raises(JobFailedError):
        await wait_for_job(client, job_id, policy=policy, resume=saved)
    assert service.request_count(job_id) == before

    service.remove_job(job_id)
    gone = wait_for_job(client, job_id, policy=policy)
    with pytest.raises(Exception, match="404"):
        await gone
    with pytest.raises(CheckpointError, match="nothing to resume"):
        gone.checkpoint()


async def test_unstarted_wait_checkpoint(service: FakeJobsService, client: JobsClient) -> None:
    """A wait not started yet checkpoints with no next poll, and resumes as a new wait with
    the checkpoint's timeout."""
    job_id = service.add_job(duration=0)
    saved = wait_for_job(client, job_id, timeout=60).checkpoint()
    assert saved["next_poll_at"] is None
    assert saved["timeout"] == 60
    assert (await wait_for_job(client, job_id, resume=saved)).succeeded


async def test_a_checkpoint_read_back_as_another_mapping_resumes(
    service: FakeJobsService, client: JobsClient
) -> None:
    """A checkpoint that comes back as a mapping other than a dict (a driver's row, a
    read-only view) resumes as the dict would, for one wait and for a fan-out."""
    job_id = service.add_job(duration=0)
    saved = wait_for_job(client, job_id, timeout=60).checkpoint()
    assert (await wait_for_job(client, job_id, resume=MappingProxyType(saved))).succeeded
    fanout_saved = wait_for_jobs(client, [job_id]).checkpoint()
    results = await wait_for_jobs(client, [], resume=MappingProxyType(fanout_saved))
    assert [result.job_id for result in results] == [job_id]


async def test_one_poll_by_the_rules_goes_on_as_in_one_process(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A queue task restores a wait, makes one poll by the rules, and checkpoints again: the
    schedule goes on as in one process (the contract of a scale-out)."""
    policy = policy_of(clock, jitter=0.0)
    job_id = service.add_job(duration=600)
    saved = await checkpoint_after(client, job_id, policy, 2)
    for _ in range(100):
        rules, state, _owed = resume_job(saved, job_id, policy)
        assert state.next_poll_at is not None
        clock.advance(max(0.0, state.next_poll_at - clock()))  # the queue runs it when due
        rules.begin(state, clock())
        timeout = rules.send(state, clock())
        job = await client.get_job(job_id, timeout=timeout)
        _news, delay = rules.answered(state, job, clock())
        state.next_poll_at = None if delay is None else clock() + delay
        saved = json.loads(json.dumps(job_checkpoint(rules, state)))
        if job.is_terminal:
            break
    assert saved["next_poll_at"] is None
    assert saved["job"]["status"] == "FINISHED"
    assert saved["polls"] == service.request_count(job_id)


async def test_timeout_with_resume_is_refused(service: FakeJobsService, client: JobsClient) -> None:
    """The deadline of a resumed wait is the checkpoint's: `timeout=` beside it is refused."""
    job_id = service.add_job(duration=0)
    saved = wait_for_job(client, job_id).checkpoint()
    with pytest.raises(ConfigurationError):
        wait_for_job(client, job_id, resume=saved, timeout=5)


async def test_every_field_saved_is_in_a_checkpoint(saved: dict[str, Any]) -> None:
    """Every field of a job's state is in its checkpoint, but those marked not saved: the
    checkpoint is derived from the records, so a new field cannot be forgotten."""
    kept = {f.name for f in attrs.fields(JobState) if f.metadata.get("saved", True)}
    assert kept <= set(saved)
    assert set(saved["pace"]) == set(attrs.fields_dict(PaceState))


async def test_a_checkpoint_of_version_1_resumes(
    client: JobsClient, saved: dict[str, Any], clock: VirtualClock
) -> None:
    """A checkpoint of version 1 (the pace's fields under their old names) resumes as the
    same checkpoint of this version does; one of an unknown version names it, and what is
    read."""
    old_names = {
        "blind_index": "index",
        "started_at": "start",
        "phase_started_at": "phase",
        "phase_progress": "base_p",
        "window_at": "win_t",
        "window_progress": "win_p",
        "middle_at": "mid_t",
        "middle_progress": "mid_p",
        "last_at": "last_t",
        "last_progress": "last_p",
        "value_seen_at": "seen_t",
        "poll_before_at": "before_t",
        "previous_at": "prev_t",
        "previous_progress": "prev_p",
        "first_move_at": "first_t",
        "first_move_progress": "first_p",
        "slower_moves": "falls",
        "slowing_from": "fell_from",
        "move_before_pace": "earlier",
    }
    pace = {old_names.get(name, name): value for name, value in saved["pace"].items()}
    old = {**saved, "version": 1, "pace": pace}
    policy = policy_of(clock)
    upgraded = wait_for_job(client, saved["job_id"], policy=policy, resume=old).checkpoint()
    again = wait_for_job(client, saved["job_id"], policy=policy, resume=saved).checkpoint()
    assert upgraded == again
    again_2 = {**saved, "version": 2}  # version 2's single wait is this one's
    assert (
        wait_for_job(client, saved["job_id"], policy=policy, resume=again_2).checkpoint() == again
    )
    with pytest.raises(CheckpointError, match=r"version 7 is not one this jobpoll reads \(3"):
        wait_for_job(client, saved["job_id"], resume={**saved, "version": 7})


async def test_a_checkpoint_without_the_pace_fields_added_since_resumes(
    client: JobsClient, saved: dict[str, Any], fanout_saved: dict[str, Any], clock: VirtualClock
) -> None:
    """A checkpoint written before a pace counted its jumps (version 2 without `jumps`)
    resumes as one that says none were seen, for one wait and for a fan-out."""

    def older(state: dict[str, Any]) -> dict[str, Any]:
        return {**state, "pace": {k: v for k, v in state["pace"].items() if k != "jumps"}}

    policy = policy_of(clock)
    resumed = wait_for_job(client, saved["job_id"], policy=policy, resume=older(saved))
    again = wait_for_job(client, saved["job_id"], policy=policy, resume=saved)
    assert resumed.checkpoint() == again.checkpoint()
    jobs = [older(state) for state in fanout_saved["jobs"]]
    fanout = wait_for_jobs(client, [], policy=policy, resume={**fanout_saved, "jobs": jobs})
    assert fanout.checkpoint()["jobs"] == fanout_saved["jobs"]


# Bad checkpoints ---------------------------------------------------------------------------


@pytest.fixture
async def saved(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> dict[str, Any]:
    job_id = service.add_job("11111111-2222-3333-4444-555555555555", duration=600)
    return await checkpoint_after(client, job_id, policy_of(clock), 3)


def altered(saved: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(saved)
    *parents, last = path.split(".")
    target = data
    for key in parents:
        target = target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return data


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        pytest.param("version", 4, "version 4", id="unknown-version"),
        pytest.param("version", DELETE, "version None", id="no-version"),
        pytest.param("version", "1", "version '1'", id="version-as-string"),
        pytest.param("job_id", "other", "not of", id="other-job"),
        pytest.param("polls", -1, "polls", id="negative-polls"),
        pytest.param("polls", 2.5, "polls", id="fractional-polls"),
        pytest.param("failures", True, "failures", id="boolean-failures"),
        pytest.param("next_poll_at", "tomorrow", "next_poll_at", id="time-no-time"),
        pytest.param("next_poll_at", "2026-01-01T00:00:00", "next_poll_at", id="time-no-offset"),
        pytest.param("deadline", 5, "deadline", id="deadline-number"),
        pytest.param("timeout", -5, "timeout", id="negative-timeout"),
        pytest.param("timeout", None, "deadline without a timeout", id="deadline-no-timeout"),
        pytest.param("job.progress", 177, "progress", id="job-progress"),
        pytest.param("job.id", "other", "job", id="job-of-other-id"),
        pytest.param("job", [], "job", id="job-not-object"),
        pytest.param("pace", DELETE, "pace", id="no-pace"),
        pytest.param("pace", "RUNNING", "expected, not str @ checkpoint.pace", id="pace-string"),
        pytest.param("pace", [1, 2], "expected, not list @ checkpoint.pace", id="pace-list"),
        pytest.param("pace.blind_index", -3, "blind_index", id="pace-index"),
        pytest.param("pace.last_at", 3600.0, "after the checkpoint", id="pace-time-ahead"),
        pytest.param("pace.started_at", float("nan"), "started_at", id="pace-nan"),
        pytest.param("pace.last_progress", 101, "last_progress", id="pace-progress"),
        pytest.param("taken_at", None, "taken_at", id="no-taken-at"),
        pytest.param("pace.slowing_from", -0.5, "slowing_from", id="pace-negative-rate"),
        pytest.param("deadline", "9999-01-01T00:00:00Z", "out of any", id="time-out-of-reach"),
        pytest.param("pace", None, "pace: missing", id="polled-without-pace"),
        pytest.param("pace.step", 0, "step", id="pace-moved-without-step"),
        pytest.param(
            "pace.previous_progress", 100, "progress values contradict", id="pace-progress-order"
        ),
        pytest.param("pace.first_move_at", 0.0, "times contradict", id="pace-time-order"),
    ],
)
async def test_bad_checkpoint(
    client: JobsClient, saved: dict[str, Any], path: str, value: Any, message: str
) -> None:
    """A checkpoint altered into nonsense is a `CheckpointError` naming what is wrong."""
    with pytest.raises(CheckpointError, match=message):
        wait_for_job(client, saved["job_id"], resume=altered(saved, path, value))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("{}", id="string"),
        pytest.param([], id="list"),
        pytest.param({}, id="empty"),
        pytest.param({"version": 1}, id="only-version"),
        pytest.param({"version": 1, "jobs": [], "unstarted": []}, id="fan-out"),
    ],
)
async def test_not_a_checkpoint(client: JobsClient, data: Any) -> None:
    """What is no single wait's checkpoint at all is a `CheckpointError` too."""
    with pytest.raises(CheckpointError):
        wait_for_job(client, "some-job", resume=data)


def leaves(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(data, dict):
        return [path for key, value in data.items() for path in leaves(value, (*prefix, key))]
    return [prefix]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=5,
)


def tampered_like(value: object) -> st.SearchStrategy[Any]:
    """What a tampered checkpoint may hold in place of `value`, of its kind: counts and
    percents past any machine word or below 0, numbers at the ends of a float, times no
    wait could have set (a string that is no time: any JSON value)."""
    if type(value) is int:
        return st.sampled_from([2**63, 2**64, -(2**63), -1, 0, 1, 50, 100, 101]) | st.integers()
    if type(value) is float:
        return st.sampled_from([1e308, -1e308, -1e-300, -1.0, 0.0]) | st.floats(-1e12, 0.0)
    if isinstance(value, str) and value.endswith("Z"):
        return st.datetimes(datetime(1971, 1, 2), datetime(8999, 12, 31)).map(
            lambda moment: moment.isoformat() + "Z"
        )
    if isinstance(value, str):  # an id or a status
        return st.sampled_from([value.upper(), value.lower(), "RUNNING", "FAILED", "NEW_ONE"])
    return JSON_VALUES


def mutated_copy(
    data: st.DataObject, base: dict[str, Any], paths: list[tuple[Any, ...]]
) -> dict[str, Any]:
    """A copy of `base` with one to three of the values at `paths` removed, or replaced by
    any JSON value or one a tampered checkpoint may hold."""
    mutated = copy.deepcopy(base)
    for path in data.draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3, unique=True)):
        target = mutated
        for key in path[:-1]:
            target = target[key]
        how = data.draw(st.sampled_from(["alike", "alike", "alike", "any", "remove"]))
        if how == "remove" and isinstance(target, dict):
            del target[path[-1]]
        else:
            kind = JSON_VALUES if how == "any" else tampered_like(target[path[-1]])
            target[path[-1]] = data.draw(kind)
    return mutated


@settings(max_examples=300)
@given(data=st.data())
def test_mutated_checkpoint_is_refused_or_resumed(data: st.DataObject) -> None:
    """Any one to three values of a valid checkpoint replaced by any JSON value (or removed)
    give a `CheckpointError`, or a wait that resumes, checkpoints again, and runs to its end
    in virtual time with its outcome or a jobpoll error, never sleeping longer than its
    policy could ask: never another error, never a crash later, never parked."""
    base = SAVED_FOR_HYPOTHESIS
    mutated = mutated_copy(data, base, leaves(base))
    clock = VirtualClock()
    policy = policy_of(clock)
    client = JobsClient("key", base_url="http://127.0.0.1:9")
    try:
        wait = wait_for_job(client, base["job_id"], policy=policy, resume=mutated)
    except CheckpointError:
        return
    # Resumed: what it restored checkpoints again, and that reads back.
    again = wait.checkpoint()
    wait_for_job(client, base["job_id"], policy=policy, resume=json.loads(json.dumps(again)))
    asyncio.run(_run_mutated([base["job_id"]], mutated, wait_for_job, base["job_id"]))


async def _run_mutated(
    job_ids: list[str], mutated: dict[str, Any], start: Any, *arguments: Any
) -> None:
    """Resume `mutated` with `start(client, *arguments, ...)` against a service where each of
    `job_ids` runs for ten minutes, and run it to its end in virtual time."""
    clock = VirtualClock()
    async with FakeJobsService(clock=clock) as service:
        for job_id in job_ids:
            service.add_job(job_id, duration=600)
        async with JobsClient(
            service.api_key, base_url=service.base_url, clock=clock, sleep=clock.sleep
        ) as client:
            await run_resumed(
                start(client, *arguments, policy=policy_of(clock), resume=mutated), clock
            )


def _saved_for_hypothesis() -> dict[str, Any]:
    async def make() -> dict[str, Any]:
        clock = VirtualClock()
        async with (
            FakeJobsService(clock=clock) as service,
            JobsClient(
                service.api_key, base_url=service.base_url, clock=clock, sleep=clock.sleep
            ) as client,
        ):
            job_id = service.add_job(duration=600)
            return await checkpoint_after(client, job_id, policy_of(clock), 4)

    return asyncio.run(make())


SAVED_FOR_HYPOTHESIS = _saved_for_hypothesis()


# A fresh process -------------------------------------------------------------------------


async def run_worker(setup: dict[str, Any]) -> dict[str, Any]:
    """Run tests/resume_worker.py with `setup`; its one line of JSON."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(WORKER),
        json.dumps(setup),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(50):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


async def test_resume_in_a_fresh_process(tmp_path: Path) -> None:
    """A wait checkpointed part-way in one process and resumed from JSON in another ends
    with the right outcome, with at most one poll more than an uninterrupted wait."""
    path = tmp_path / "clock"
    path.write_text("1000.0")
    async with FakeJobsService(clock=lambda: float(path.read_text())) as service:
        common = {"base_url": service.base_url, "api_key": service.api_key, "clock_file": str(path)}
        alone_id = service.add_job(duration=1800, final_status="FAILED")
        alone = await run_worker(
            {**common, "job_ids": alone_id, "stop_after": None, "resume": None}
        )
        assert alone["outcome"] == "failed FAILED"
        assert alone["polls"] == service.request_count(alone_id)

        path.write_text("1000.0")  # the same job again, from the same moment
        job_id = service.add_job(duration=1800, final_status="FAILED")
        first = await run_worker({**common, "job_ids": job_id, "stop_after": 5, "resume": None})
        checkpoint = first["checkpoint"]
        assert checkpoint["next_poll_at"] is not None
        second = await run_worker(
            {**common, "job_ids": job_id, "stop_after": None, "resume": checkpoint}
        )
    assert second["outcome"] == "failed FAILED"
    assert second["sleeps"][0] > 0  # the next poll came when it was due, not at once
    assert second["polls"] == service.request_count(job_id)
    assert second["polls"] <= alone["polls"] + 1
    assert first["sleeps"] + second["sleeps"] == pytest.approx(alone["sleeps"], abs=1e-5)


# Fan-outs ----------------------------------------------------------------------------------

OUTCOMES = ["FINISHED", "FAILED", "ARCHIVED", "CANCELED"]


def script_jobs(service: FakeJobsService, seed: int, count: int) -> list[str]:
    """`count` jobs of mixed durations and outcomes, the same for the same seed."""
    rnd = random.Random(seed)
    return [
        service.add_job(duration=rnd.uniform(0, 1800), final_status=rnd.choice(OUTCOMES))
        for _ in range(count)
    ]


async def test_fanout_resumed_reports_each_job_once(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A fan-out checkpointed part-way and resumed reports every job not reported before
    exactly once, with the outcome of an uninterrupted fan-out, and at most one poll more
    per job."""
    policy = policy_of(clock, jitter=0.0)
    alone_ids = script_jobs(service, 3, 40)
    # One poll at a time: virtual time moves only while nothing is in flight, so each poll
    # sees its job as the same poll of the other fan-out does.
    alone = {
        r.job_id: r for r in await wait_for_jobs(client, alone_ids, policy=policy, max_in_flight=1)
    }

    clock.now = clock.start
    ids = script_jobs(service, 3, 40)
    twin = dict(zip(ids, alone_ids, strict=True))
    before: list[JobResult] = []
    async with wait_for_jobs(client, ids, policy=policy, timeout=7200, max_in_flight=1) as fanout:
        async for result in fanout:
            before.append(result)
            if len(before) == 15:
                saved = json.loads(json.dumps(fanout.checkpoint()))
                break
    assert saved["version"] == 3
    reported = {r.job_id for r in before}
    pending = {state["job_id"] for state in saved["jobs"]} | set(saved["unstarted"])
    assert reported.isdisjoint(pending)
    assert reported | pending == set(ids)

    resumed = wait_for_jobs(client, [], policy=policy, resume=saved, max_in_flight=1)
    assert resumed.total == len(pending)
    after = await resumed
    assert [r.job_id for r in after] == [i for i in ids if i in pending]  # in the given order
    for result in before + after:
        expected = alone[twin[result.job_id]]
        assert result.job is not None
        assert expected.job is not None
        assert (result.job.raw_status, result.job.progress) == (
            expected.job.raw_status,
            expected.job.progress,
        )
        assert type(result.error) is type(expected.error)
        assert service.request_count(result.job_id) <= service.request_count(expected.job_id) + 1


@pytest.mark.parametrize("handed_out", [0, 1, 3, 9])
async def test_fanout_checkpoint_holds_what_is_not_handed_out(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock, handed_out: int
) -> None:
    """Results ready but not handed out, and polls in flight, are in the checkpoint: jobs seen
    ended are handed out on resuming without a poll, the others polled again."""
    policy = policy_of(clock)
    ids = [service.add_job(duration=0) for _ in range(10)]
    before: list[JobResult] = []
    fanout = wait_for_jobs(client, ids, policy=policy)
    async with fanout:
        for _ in range(handed_out):
            before.append(await anext(fanout))
        saved = json.loads(json.dumps(fanout.checkpoint()))
    requests = {job_id: service.request_count(job_id) for job_id in ids}
    ended = {s["job_id"] for s in saved["jobs"] if s["next_poll_at"] is None}
    after = await wait_for_jobs(client, [], policy=policy, resume=saved)
    assert counts_of(before + after) == dict.fromkeys(ids, 1)
    for job_id in ended:
        assert service.request_count(job_id) == requests[job_id]
    assert all(r.ok for r in before + after)


def counts_of(results: list[JobResult]) -> dict[str, int]:
    found: dict[str, int] = {}
    for result in results:
        found[result.job_id] = found.get(result.job_id, 0) + 1
    return found


async def test_fanout_checkpoint_of_ids_not_set_up(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """Ids added but not set up yet are in the checkpoint, and the ids given on resuming
    are added to the checkpoint's (once)."""
    policy = policy_of(clock)
    ids = [service.add_job(duration=5) for _ in range(5)]
    fanout = wait_for_jobs(client, ids[:3], policy=policy, timeout=600)
    fanout.add(ids[2:4])
    saved = fanout.checkpoint()
    assert saved["unstarted"] == ids[:4]
    assert saved["deadline"] is None
    assert saved["timeout"] == 600
    results = await wait_for_jobs(client, ids[3:], policy=policy, resume=saved)
    assert [r.job_id for r in results] == ids


async def test_fanout_resumes_at_the_rate_its_client_had_learned(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """The rate a client learned from the service's refusals travels in the fan-out's
    checkpoint: a fan-out resumed on a new client starts at it, not from scratch."""
    ids = [service.add_job(duration=50) for _ in range(40)]
    service.rate_limit = RateLimit(rate=2.0, burst=1.0)
    fanout = wait_for_jobs(client, ids, policy=policy_of(clock), max_in_flight=40)
    async with fanout:
        await anext(fanout)
        saved = json.loads(json.dumps(fanout.checkpoint()))
    assert client.rate < 10
    rate = saved["rate"]
    assert rate is not None
    assert set(rate) == {"rate", "peak", "cut_at"}
    assert rate["cut_at"] <= 0  # seconds before the checkpoint was taken
    async with JobsClient(
        service.api_key, base_url=service.base_url, clock=clock, sleep=clock.sleep
    ) as fresh:
        assert fresh.rate == math.inf
        resumed = wait_for_jobs(fresh, [], policy=policy_of(clock), resume=saved)
        assert fresh.rate == pytest.approx(rate["rate"], rel=0.5)
        service.rate_limit = None
        results = await resumed
    assert {r.job_id for r in results} | {r.job_id for r in []} <= set(ids)
    assert all(r.ok for r in results)


async def test_a_version_2_fanout_checkpoint_resumes_without_its_window_and_pause(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """Version 2 held the fan-out's window and pause, which the client's rate replaced: they
    are dropped, and the jobs resume."""
    ids = [service.add_job(duration=5) for _ in range(3)]
    saved = wait_for_jobs(client, ids, policy=policy_of(clock)).checkpoint()
    del saved["rate"]
    old = {**saved, "version": 2, "window": 4, "pause_until": None}
    results = await wait_for_jobs(client, [], policy=policy_of(clock), resume=old)
    assert sorted(r.job_id for r in results) == sorted(ids)


#: A job's state in a fan-out's checkpoint, for tests to alter.
#: A job not started, as a checkpoint holds it: every field saved, at its declared default.
EMPTY_STATE = {
    **{f.name: f.default for f in attrs.fields(JobState) if f.metadata.get("saved", True)},
    "job_id": "a",
}


async def stand_still(_seconds: float) -> None:
    """A policy's sleep that never ends in a test: time moves only when the test says so."""
    await asyncio.sleep(3600)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"version": 0}, "version 0", id="version"),
        pytest.param({"polls": -1}, "polls", id="negative-polls"),
        pytest.param({"rate": {"rate": "4", "peak": None, "cut_at": 0}}, "rate", id="rate-string"),
        pytest.param({"rate": {"rate": -4, "peak": None, "cut_at": 0}}, "rate", id="rate-negative"),
        pytest.param({"rate": {"rate": 1e-300, "peak": None, "cut_at": 0}}, "rate", id="rate-tiny"),
        pytest.param({"rate": {"rate": 4, "peak": None}}, "cut_at", id="rate-no-cut"),
        pytest.param({"unstarted": ["ok", "bad\n"]}, "unstarted", id="invalid-unstarted"),
        pytest.param({"unstarted": "abc"}, "unstarted", id="unstarted-string"),
        pytest.param({"jobs": {}}, "jobs", id="jobs-object"),
        pytest.param(
            {"rate": {"rate": 4, "peak": None, "cut_at": 60}}, "cut_at", id="rate-cut-ahead"
        ),
        pytest.param({"jobs": [{**EMPTY_STATE, "job_id": ""}]}, "empty", id="job-id-empty"),
    ],
)
async def test_bad_fanout_checkpoint(
    service: FakeJobsService, client: JobsClient, change: dict[str, Any], message: str
) -> None:
    """A fan-out checkpoint altered into nonsense is a `CheckpointError` naming the field."""
    saved = wait_for_jobs(client, ["a", "b"]).checkpoint()
    with pytest.raises(CheckpointError, match=message):
        wait_for_jobs(client, [], resume={**saved, **change})


async def test_fanout_checkpoint_with_repeated_or_unpaced_jobs(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A job twice, or a job without its schedule, or a single wait's checkpoint, is refused."""
    policy = attrs.evolve(policy_of(clock), sleep=stand_still)
    ids = [service.add_job(duration=600) for _ in range(2)]
    async with wait_for_jobs(client, ids, policy=policy) as fanout:
        consumer = asyncio.create_task(anext(fanout))
        await until(lambda: fanout.polls == 2 and not fanout.in_flight)
        saved = json.loads(json.dumps(fanout.checkpoint()))
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
    assert len(saved["jobs"]) == 2
    twice = {**saved, "jobs": [saved["jobs"][0], saved["jobs"][0]]}
    with pytest.raises(CheckpointError, match="twice"):
        wait_for_jobs(client, [], resume=twice)
    also_unstarted = {**saved, "unstarted": [ids[0]]}
    with pytest.raises(CheckpointError, match="twice"):
        wait_for_jobs(client, [], resume=also_unstarted)
    unpaced = {**saved, "jobs": [{**saved["jobs"][0], "pace": None, "polls": 0, "job": None}]}
    with pytest.raises(CheckpointError, match="pace"):
        wait_for_jobs(client, [], resume=unpaced)
    single = wait_for_job(client, ids[0]).checkpoint()
    with pytest.raises(CheckpointError, match="wait_for_job"):
        wait_for_jobs(client, [], resume=single)
    with pytest.raises(ConfigurationError):
        wait_for_jobs(client, [], resume=saved, timeout=5)


async def test_fanout_resume_in_a_fresh_process(tmp_path: Path) -> None:
    """A fan-out checkpointed in one process and resumed from JSON in another reports every
    job once over the two, with the outcome of an uninterrupted one, and at most one poll
    more per job."""
    path = tmp_path / "clock"
    path.write_text("1000.0")
    async with FakeJobsService(clock=lambda: float(path.read_text())) as service:
        common = {"base_url": service.base_url, "api_key": service.api_key, "clock_file": str(path)}
        alone_ids = script_jobs(service, 8, 25)
        alone = await run_worker(
            {**common, "job_ids": alone_ids, "stop_after": None, "resume": None}
        )
        path.write_text("1000.0")
        ids = script_jobs(service, 8, 25)
        first = await run_worker({**common, "job_ids": ids, "stop_after": 10, "resume": None})
        second = await run_worker(
            {**common, "job_ids": [], "stop_after": None, "resume": first["checkpoint"]}
        )
        requests = {job_id: service.request_count(job_id) for job_id in alone_ids + ids}
    assert len(first["outcome"]) == 10
    assert set(first["outcome"]).isdisjoint(second["outcome"])
    outcome = {**first["outcome"], **second["outcome"]}
    assert list(outcome.values()) != []
    for job_id, twin in zip(ids, alone_ids, strict=True):
        assert outcome[job_id] == alone["outcome"][twin]
        assert requests[job_id] <= requests[twin] + 1
    assert second["polls"] <= alone["polls"] + 25


@settings(max_examples=40)
@given(
    stops=st.lists(st.tuples(st.integers(0, 40), st.booleans()), min_size=1, max_size=5),
    from_source=st.booleans(),
)
def test_fanout_stopped_and_resumed_at_random(
    stops: list[tuple[int, bool]], from_source: bool
) -> None:
    """A worker stopped at any moment (a poll, a pause, the cleanup of an earlier stop),
    checkpointing on its way out and resumed from the JSON by a new fan-out, reports every
    distinct id exactly once over all its runs, each with its right outcome."""
    asyncio.run(_stopped_at_random(stops, from_source))


async def _stopped_at_random(stops: list[tuple[int, bool]], from_source: bool) -> None:
    clock = VirtualClock()
    async with FakeJobsService(clock=clock) as service:
        expected = add_mixed_jobs(service)
        policy = policy_of(clock, max_failures=100)
        ids = [*expected, *expected][:20]  # duplicates too

        given = 0 if from_source else len(ids)  # how many ids the source has given

        async def source() -> AsyncIterator[str]:
            nonlocal given
            for job_id in ids:
                given += 1
                yield job_id
                await asyncio.sleep(0)

        seen: list[JobResult] = []
        saved: dict[str, Any] | None = None
        async with JobsClient(
            service.api_key, base_url=service.base_url, clock=clock, sleep=clock.sleep
        ) as client:
            for ticks, twice in stops:
                if saved is None:
                    first: Any = source() if from_source else ids
                    fanout = wait_for_jobs(client, first, policy=policy, max_in_flight=4)
                else:
                    # The source is the worker's: the ids it has not given yet go to the
                    # resumed fan-out (once: from then on they are in the checkpoints).
                    rest, given = ids[given:], len(ids)
                    fanout = wait_for_jobs(
                        client, rest, policy=policy, max_in_flight=4, resume=saved
                    )

                async def consume(fanout: JobsWait = fanout) -> None:
                    async for result in fanout:
                        seen.append(result)

                task = asyncio.ensure_future(consume())
                for _ in range(ticks):
                    await asyncio.sleep(0)
                task.cancel()
                if twice:
                    await asyncio.sleep(0)
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                saved = json.loads(json.dumps(fanout.checkpoint()))
                await fanout.aclose()  # the process ends
            last = wait_for_jobs(client, ids[given:], policy=policy, resume=saved)
            async with last:
                seen.extend([result async for result in last])
        assert sorted(result.job_id for result in seen) == sorted(expected)
        for result in seen:
            outcome = type(result.error).__name__ if result.error else "FINISHED"
            if result.job is not None and result.job.failed:
                outcome = result.job.raw_status
            assert outcome == expected[result.job_id], result


@settings(max_examples=40)
@given(stops=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 20)), min_size=1, max_size=6))
def test_fanout_awaited_cancelled_and_resumed_at_random(stops: list[tuple[int, int]]) -> None:
    """`results = await fanout` cancelled at any moment (after some snapshots, a few steps
    of the loop later), then checkpointed and resumed: what the cancelled `await` had
    collected counts as not reported and is in the checkpoint, so over all its runs the
    caller receives every distinct id once, each with its outcome."""
    asyncio.run(_awaited_at_random(stops))


async def _awaited_at_random(stops: list[tuple[int, int]]) -> None:
    clock = VirtualClock()
    async with FakeJobsService(clock=clock) as service:
        expected = add_mixed_jobs(service)
        policy = policy_of(clock, max_failures=100)
        received: list[JobResult] = []
        saved: dict[str, Any] | None = None
        snapshots = 0

        def seen(_job: Job) -> None:
            nonlocal snapshots
            snapshots += 1

        async with JobsClient(
            service.api_key, base_url=service.base_url, clock=clock, sleep=clock.sleep
        ) as client:
            for stop in [*stops, None]:
                ids = list(expected) if saved is None else []
                fanout = wait_for_jobs(
                    client, ids, policy=policy, max_in_flight=4, on_update=seen, resume=saved
                )
                gathering = asyncio.ensure_future(_gathered(fanout))
                if stop is not None:
                    snapshots, (updates, ticks) = 0, stop
                    await until(lambda: snapshots >= updates or gathering.done())  # noqa: B023
                    for _ in range(ticks):
                        await asyncio.sleep(0)
                    gathering.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    received.extend(await gathering)
                if gathering.cancelled():
                    assert fanout.reported == 0  # nothing reached the caller
                saved = json.loads(json.dumps(fanout.checkpoint()))
                await fanout.aclose()  # the process ends
                if not gathering.cancelled():
                    break
        assert sorted(result.job_id for result in received) == sorted(expected)
        for result in received:
            outcome = type(result.error).__name__ if result.error else "FINISHED"
            if result.job is not None and result.job.failed:
                outcome = result.job.raw_status
            assert outcome == expected[result.job_id], result


async def _gathered(fanout: JobsWait) -> list[JobResult]:
    return await fanout


def _fanout_saved_for_hypothesis() -> dict[str, Any]:
    async def make() -> dict[str, Any]:
        clock = VirtualClock()
        async with (
            FakeJobsService(clock=clock) as service,
            JobsClient(
                service.api_key, base_url=service.base_url, clock=clock, sleep=clock.sleep
            ) as client,
        ):
            ids = [service.add_job(duration=60 * i) for i in range(4)]
            fanout = wait_for_jobs(client, ids, policy=policy_of(clock), timeout=7200)
            async with fanout:
                await anext(fanout)
                fanout.add(["not-set-up-yet"])
                saved: dict[str, Any] = json.loads(json.dumps(fanout.checkpoint()))
            return saved

    return asyncio.run(make())


FANOUT_SAVED_FOR_HYPOTHESIS = _fanout_saved_for_hypothesis()


def fanout_leaves(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(data, dict):
        return [p for key, value in data.items() for p in fanout_leaves(value, (*prefix, key))]
    if isinstance(data, list):
        return [p for i, value in enumerate(data) for p in fanout_leaves(value, (*prefix, i))]
    return [prefix]


@settings(max_examples=300)
@given(data=st.data())
def test_mutated_fanout_checkpoint_is_refused_or_resumed(data: st.DataObject) -> None:
    """Any one to three values of a fan-out's checkpoint replaced by any JSON value (or
    removed) give a `CheckpointError`, or a fan-out that resumes, checkpoints again, and
    runs to its end in virtual time (its results, or a jobpoll error), never sleeping
    longer than its policy could ask."""
    base = FANOUT_SAVED_FOR_HYPOTHESIS
    mutated = mutated_copy(data, base, fanout_leaves(base))
    policy = policy_of(VirtualClock())
    client = JobsClient("key", base_url="http://127.0.0.1:9")
    try:
        fanout = wait_for_jobs(client, [], policy=policy, resume=mutated)
    except CheckpointError:
        return
    again = json.loads(json.dumps(fanout.checkpoint()))
    wait_for_jobs(client, [], policy=policy, resume=again)
    job_ids = [state["job_id"] for state in base["jobs"]]
    asyncio.run(_run_mutated(job_ids, mutated, wait_for_jobs, []))


@pytest.mark.parametrize(
    "duration", [pytest.param(0, id="terminal"), pytest.param(600, id="running")]
)
async def test_a_snapshot_owed_by_a_cancelled_on_update_is_yielded_once_resumed(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock, duration: float
) -> None:
    """A wait whose async `on_update` was cancelled owes the iteration that snapshot, and so
    does its checkpoint: resumed, it yields that snapshot first, without a poll, as the wait
    iterated again does (a terminal one, and nothing more)."""
    policy = policy_of(clock)
    job_id = service.add_job(duration=duration)
    on_update = BlocksOnce()
    wait = wait_for_job(client, job_id, policy=policy, on_update=on_update)
    await on_update.cancel_inside(anext(wait))
    saved = json.loads(json.dumps(wait.checkpoint()))
    owed = await anext(wait)
    polls = service.request_count(job_id)
    resumed = wait_for_job(client, job_id, policy=policy, resume=saved)
    first = await anext(resumed)
    assert (first.raw_status, first.progress) == (owed.raw_status, owed.progress)
    assert service.request_count(job_id) == polls
    if owed.is_terminal:
        assert [job async for job in resumed] == []
        assert (await resumed).succeeded
    else:
        assert (await resumed).succeeded


async def test_a_fanout_cancelled_in_on_update_reports_that_job_once_resumed(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A fan-out whose async `on_update` was cancelled on a job's last snapshot holds that
    job's result, ready: its checkpoint hands it out at once on resuming, without a poll."""
    policy = policy_of(clock)
    ids = [service.add_job(duration=0), service.add_job(duration=600)]
    on_update = BlocksOnce()
    fanout = wait_for_jobs(client, ids, policy=policy, on_update=on_update, max_in_flight=1)
    await on_update.cancel_inside(anext(fanout))
    saved = json.loads(json.dumps(fanout.checkpoint()))
    await fanout.aclose()
    polls = service.request_count(ids[0])
    results = await wait_for_jobs(client, [], policy=policy, resume=saved)
    assert [(result.job_id, result.ok) for result in results] == [(ids[0], True), (ids[1], True)]
    assert service.request_count(ids[0]) == polls


async def test_fanout_checkpoint_after_leaving_async_with(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A fan-out left by `async with` (cancelled, say) still checkpoints every job it had not
    handed out, polls that were in flight included."""
    ids = [service.add_job(duration=600 + i) for i in range(6)]
    service.inject(Slow(0.05), times=None)  # polls stay in flight for a moment
    async with wait_for_jobs(client, ids, policy=policy_of(clock)) as fanout:
        consumer = asyncio.create_task(anext(fanout))
        await until(lambda: fanout.in_flight > 0)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
    saved = fanout.checkpoint()
    assert {state["job_id"] for state in saved["jobs"]} == set(ids)
    service.clear_faults()
    results = await wait_for_jobs(client, [], policy=policy_of(clock), resume=saved)
    assert [result.job_id for result in results] == ids


PACE_NUMBERS = st.one_of(
    st.integers(-1, 101), st.floats(-1e4, 0.0), st.sampled_from([0, -1, 0.0, 1e-9, -1e-9])
)


@settings(max_examples=300)
@given(data=st.data())
def test_resumed_pace_never_breaks_at_the_next_poll(data: st.DataObject) -> None:
    """A checkpoint whose pace numbers were altered (each within its own range, but not
    agreeing with each other) is refused, or its wait goes on: the next answers, whatever
    they read, give a delay, never a ZeroDivisionError or a math domain error."""
    mutated = copy.deepcopy(SAVED_FOR_HYPOTHESIS)
    numbers = [field.name for field in attrs.fields(PaceState)][2:]  # not the index, status
    for name in data.draw(st.lists(st.sampled_from(numbers), min_size=1, max_size=3)):
        mutated["pace"][name] = data.draw(PACE_NUMBERS)
    clock = VirtualClock()
    clock.advance(60)
    policy = policy_of(clock)
    try:
        _rules, state, _owed = resume_job(mutated, mutated["job_id"], policy)
    except CheckpointError:
        return
    seen = state.job
    assert seen is not None
    assert state.pace is not None
    pace = Pace(policy, state.pace)
    readings = st.sampled_from([seen.progress, seen.progress + 1, 99]) | st.integers(0, 99)
    for progress in data.draw(st.lists(readings, min_size=1, max_size=3)):
        clock.advance(data.draw(st.sampled_from([0.0, 1.0, 30.0])))
        delay = pace.answered(clock.now, attrs.evolve(seen, progress=progress))
        assert delay >= 0


@settings(max_examples=300)
@given(
    readings=st.lists(
        st.tuples(
            st.sampled_from([0.0, 1e-7, 0.5, 1.0, 7.0, 60.0]),
            st.sampled_from(["RUNNING", "WAITING"]),
            st.integers(0, 99),
        ),
        max_size=12,
    )
)
def test_every_pace_a_wait_reaches_is_saved_and_read_back(
    readings: list[tuple[float, str, int]],
) -> None:
    """Whatever readings a pace took (moves, pauses, new statuses, progress going back), its
    checkpoint is accepted: the checks on a pace's numbers refuse no pace jobpoll made."""
    clock = VirtualClock()
    policy = policy_of(clock)
    client = JobsClient("key", base_url="http://127.0.0.1:9")
    rules, state = Rules(policy, None), JobState(job_id="some-job")
    rules.begin(state, clock.now)
    for gap, status, progress in readings:
        clock.advance(gap)
        job = Job(
            id="some-job",
            created_at=datetime(2026, 1, 1, tzinfo=UTC),
            user="someone",
            progress=progress,
            status=JobStatus(status),
            raw_status=status,
        )
        rules.send(state, clock.now)
        rules.answered(state, job, clock.now)
    saved = json.loads(json.dumps(job_checkpoint(rules, state)))
    clock.advance(1.0)
    wait_for_job(client, "some-job", policy=policy, resume=saved)


@pytest.mark.parametrize("seconds", [pytest.param(2.5e11, id="year-9948"), 1e12, 1e300])
async def test_a_timeout_far_away_checkpoints_and_resumes(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock, seconds: float
) -> None:
    """A timeout that `wait_for_job` and `wait_for_jobs` take, however far away (a user's
    "forever"), gives a checkpoint that resumes: never a ValueError from `datetime`, nor a
    checkpoint that its own reader refuses."""
    job_id = service.add_job(duration=600)
    wait = wait_for_job(client, job_id, policy=policy_of(clock), timeout=seconds)
    await anext(wait)
    saved = json.loads(json.dumps(wait.checkpoint()))
    resumed = wait_for_job(client, job_id, policy=policy_of(clock), resume=saved)
    assert (await resumed).succeeded

    ids = [service.add_job(duration=0), service.add_job(duration=600)]
    async with wait_for_jobs(client, ids, policy=policy_of(clock), timeout=seconds) as fanout:
        assert (await anext(fanout)).job_id == ids[0]  # started: its deadline is set
    saved = json.loads(json.dumps(fanout.checkpoint()))
    results = await wait_for_jobs(client, [], policy=policy_of(clock), resume=saved)
    assert [result.ok for result in results] == [True]


@pytest.mark.parametrize("start", [-1e12, -1000.0, -0.5, 0.0, 1e12, 1e15])
async def test_checkpoints_on_a_clock_reading_anything(start: float) -> None:
    """A policy's clock may read any value (a monotonic clock starts anywhere, below 0
    too): a wait and a fan-out on it checkpoint unstarted and part-way, and resume to their
    end, never a ValueError from `checkpoint()`."""
    clock = VirtualClock(start)
    policy = policy_of(clock)
    async with (
        FakeJobsService(clock=clock) as service,
        JobsClient(
            service.api_key, base_url=service.base_url, clock=clock, sleep=clock.sleep
        ) as client,
    ):
        job_id = service.add_job(duration=600)
        wait = wait_for_job(client, job_id, policy=policy, timeout=7200)
        wait_for_job(client, job_id, policy=policy, resume=wait.checkpoint())
        await anext(wait)
        saved = json.loads(json.dumps(wait.checkpoint()))
        assert (await wait_for_job(client, job_id, policy=policy, resume=saved)).succeeded

        ids = [service.add_job(duration=0), service.add_job(duration=600)]
        async with wait_for_jobs(client, ids, policy=policy, timeout=7200) as fanout:
            wait_for_jobs(client, [], policy=policy, resume=fanout.checkpoint())
            assert (await anext(fanout)).job_id == ids[0]
        saved = json.loads(json.dumps(fanout.checkpoint()))
        results = await wait_for_jobs(client, [], policy=policy, resume=saved)
        assert [result.ok for result in results] == [True]


async def test_a_server_spelling_the_id_in_another_case_checkpoints_and_resumes(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A service answering each job with its id upper-cased (ids are the same job in any
    case): a wait and a fan-out checkpoint part-way, resume from the JSON and end as their
    jobs do, never a plain ValueError from `checkpoint()` or `resume=`."""
    policy = policy_of(clock)
    job_id = service.add_job(duration=600)
    service.inject(Patch({"id": job_id.upper()}), job_id=job_id, times=None)
    wait = wait_for_job(client, job_id, policy=policy, timeout=7200)
    await anext(wait)
    await anext(wait)
    saved = json.loads(json.dumps(wait.checkpoint()))
    assert (await wait_for_job(client, job_id, policy=policy, resume=saved)).succeeded

    ids = [service.add_job(duration=60), service.add_job(duration=600)]
    for each in ids:
        service.inject(Patch({"id": each.upper()}), job_id=each, times=None)
    async with wait_for_jobs(client, ids, policy=policy) as fanout:
        assert (await anext(fanout)).job_id == ids[0]
        saved = json.loads(json.dumps(fanout.checkpoint()))
    results = await wait_for_jobs(client, [], policy=policy, resume=saved)
    assert [(result.job_id, result.ok) for result in results] == [(ids[1], True)]


async def test_a_resumed_wait_rides_out_a_server_not_up_yet(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A wait resumed by a new process whose client has never had an answer (the service
    restarting in the same deploy) rides out refused connections for `first_contact_grace`
    from its first poll there, as a new wait does, rather than ending at the first one
    because the wait began long ago; a fan-out too."""
    job_id = service.add_job(duration=3600)
    saved = await checkpoint_after(client, job_id, policy_of(clock), 3)
    ids = [job_id, service.add_job(duration=3600)]
    async with wait_for_jobs(client, ids, policy=policy_of(clock)) as fanout:
        consumer = asyncio.ensure_future(anext(fanout))
        await until(lambda: fanout.polls >= 2)
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    saved_fanout = json.loads(json.dumps(fanout.checkpoint()))
    clock.advance(3000)  # the worker was down for long
    policy = policy_of(clock, first_contact_grace=20.0)
    with refusing_url() as base_url:
        # The client's rate on the virtual clock too: refused, it slows, in virtual seconds.
        async with JobsClient("k", base_url=base_url, clock=clock, sleep=clock.sleep) as fresh:
            resumed = wait_for_job(fresh, job_id, policy=policy, resume=saved)
            start = clock.now
            with pytest.raises(TransportError):
                await resumed
            assert clock.now - start >= 20
            assert resumed.polls - saved["polls"] > 1

            start = clock.now
            fanout = wait_for_jobs(fresh, [], policy=policy, resume=saved_fanout)
            with pytest.raises(TransportError):
                await fanout
            assert clock.now - start >= 20


async def test_a_resumed_wait_awaited_later_polls_when_due(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A wait resumed at a worker's start but awaited only a while later (after the others
    were set up, say) polls when its poll was due, not that long after it."""
    policy = policy_of(clock)
    job_id = service.add_job(duration=3600)
    saved = await checkpoint_after(client, job_id, policy, 3)
    resumed = wait_for_job(client, job_id, policy=policy, resume=saved)
    delay = seconds_between(saved["taken_at"], saved["next_poll_at"])
    assert delay > 1
    clock.advance(1)  # the wait is awaited a second after it was resumed
    sleeps = len(clock.sleeps)
    await anext(resumed)
    assert clock.sleeps[sleeps] == pytest.approx(delay - 1, abs=1e-5)

    resumed = wait_for_job(client, job_id, policy=policy, resume=saved)
    clock.advance(3 * delay)  # awaited long after its poll was due: polled at once
    sleeps = len(clock.sleeps)
    await anext(resumed)
    assert clock.sleeps[sleeps : sleeps + 1] in ([], [0.0])


async def test_a_checkpoint_from_a_clock_ahead_resumes_as_if_taken_just_now(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """A checkpoint taken where the wall clock reads up to a day ahead of this machine's
    resumes as if taken just now: its next poll after the delay it saved, its deadline as
    far away as when it was taken, not passed at once."""
    policy = policy_of(clock)
    job_id = service.add_job(duration=4 * 3600)
    saved = await checkpoint_after(client, job_id, policy, 3)
    clock.epoch -= 23 * 3600  # this machine's wall clock reads 23 hours behind
    resumed_at = clock.now
    resumed = wait_for_job(client, job_id, policy=policy, resume=saved)
    delay = seconds_between(saved["taken_at"], saved["next_poll_at"])
    assert await first_sleep(resumed, clock) == pytest.approx(delay, abs=1e-5)
    with pytest.raises(WaitTimeout):
        await resumed
    left = seconds_between(saved["taken_at"], saved["deadline"])
    assert clock.now - resumed_at == pytest.approx(left, abs=1e-3)


@pytest.mark.parametrize(
    "taken_at",
    [
        pytest.param("8999-01-01T00:00:00Z", id="8999"),
        pytest.param("2026-01-02T00:10:00Z", id="a-day-and-minutes"),
    ],
)
async def test_a_checkpoint_taken_more_than_a_day_ahead_is_refused(
    client: JobsClient,
    clock: VirtualClock,
    saved: dict[str, Any],
    fanout_saved: dict[str, Any],
    taken_at: str,
) -> None:
    """A `taken_at` further ahead of this machine's clock than any clock that is merely off
    is a `CheckpointError` saying what it found, not a wait timed out at once."""
    policy = policy_of(clock)
    with pytest.raises(CheckpointError, match=f"taken_at {taken_at} lies .* ahead"):
        wait_for_job(client, saved["job_id"], policy=policy, resume={**saved, "taken_at": taken_at})
    with pytest.raises(CheckpointError, match="taken_at"):
        wait_for_jobs(client, [], policy=policy, resume={**fanout_saved, "taken_at": taken_at})


#: The longest delay `policy_of(clock)` can ask for between two polls (a pace's longest
#: wait, `max_estimated_interval`, or a `Retry-After`): no resumed wait may sleep longer,
#: whatever it read.
LONGEST_DELAY = max(PollPolicy().max_estimated_interval, PollPolicy().max_retry_after)


def tampered(saved: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of `saved` with each dotted path (a number: a list's item) set to its value."""
    data = copy.deepcopy(saved)
    for path, value in changes.items():
        *parents, last = [int(key) if key.isdigit() else key for key in path.split(".")]
        target = data
        for key in parents:
            target = target[key]
        target[last] = value
    return data


async def run_resumed(wait: JobWait | JobsWait, clock: VirtualClock) -> object:
    """Await a resumed wait to its end in virtual time: what it returned, or the jobpoll
    error that ended it; it never sleeps longer than `LONGEST_DELAY` at a time."""
    sleeps = len(clock.sleeps)
    outcome: object
    try:
        outcome = await wait
    except JobPollError as exc:
        outcome = exc
    assert max(clock.sleeps[sleeps:], default=0.0) <= LONGEST_DELAY
    return outcome


@pytest.mark.parametrize(
    ("changes", "reads_zero"),
    [
        pytest.param({"polls": 2**63}, False, id="polls-2**63"),
        pytest.param({"failures": 2**64}, False, id="failures-2**64"),
        pytest.param({"pace.blind_index": 2**63}, False, id="pace-index-2**63"),
        pytest.param(
            {"pace.middle_progress": -1, "pace.phase_progress": 50}, False, id="unmoved-base-ahead"
        ),
        pytest.param(
            {"pace.middle_progress": -1, "pace.last_progress": -1, "pace.step": 0},
            True,
            id="unmoved-no-reading",
        ),
        pytest.param({"next_poll_at": "8999-01-01T00:00:00Z"}, False, id="next-poll-in-8999"),
    ],
)
async def test_tampered_checkpoint_is_refused_or_resumes(
    service: FakeJobsService,
    client: JobsClient,
    clock: VirtualClock,
    saved: dict[str, Any],
    changes: dict[str, Any],
    reads_zero: bool,
) -> None:
    """A checkpoint tampered with (a count past any machine word, a pace whose numbers
    contradict each other, a next poll millennia away) is a `CheckpointError` at the call,
    or a wait that ends as its job does without sleeping longer than its policy could ask:
    never an OverflowError, a ZeroDivisionError or a math domain error, never parked."""
    if reads_zero:  # the job reads 0% until it ends
        service.add_job(saved["job_id"], duration=600, progress=None)
    try:
        wait = wait_for_job(
            client, saved["job_id"], policy=policy_of(clock), resume=tampered(saved, changes)
        )
    except CheckpointError:
        return
    outcome = await run_resumed(wait, clock)
    assert isinstance(outcome, Job), outcome
    assert outcome.succeeded


@pytest.fixture
async def fanout_saved(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> dict[str, Any]:
    """A fan-out's checkpoint, one of its four jobs reported, the others polled a while."""
    ids = [service.add_job(duration=60 * i) for i in range(1, 5)]
    async with wait_for_jobs(client, ids, policy=policy_of(clock)) as fanout:
        await anext(fanout)
        saved: dict[str, Any] = json.loads(json.dumps(fanout.checkpoint()))
    return saved


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"jobs.0.polls": 2**63}, id="polls-2**63"),
        pytest.param({"jobs.0.failures": 2**63}, id="failures-2**63"),
        pytest.param({"jobs.0.pace.blind_index": 2**63}, id="pace-index-2**63"),
        pytest.param({"jobs.0.pace.slower_moves": 2**64}, id="pace-falls-2**64"),
        pytest.param(
            {"jobs.0.pace.middle_progress": -1, "jobs.0.pace.phase_progress": 50},
            id="unmoved-base-ahead",
        ),
        pytest.param({"jobs.0.next_poll_at": "8999-01-01T00:00:00Z"}, id="next-poll-in-8999"),
        pytest.param({"rate": {"rate": 1e300, "peak": 1e300, "cut_at": -1e12}}, id="rate-huge"),
    ],
)
async def test_tampered_fanout_checkpoint_is_refused_or_resumes(
    client: JobsClient, clock: VirtualClock, fanout_saved: dict[str, Any], changes: dict[str, Any]
) -> None:
    """A fan-out's checkpoint tampered with is a `CheckpointError` at the call, or a fan-out
    whose jobs all end as they do, without sleeping longer than its policy could ask."""
    try:
        fanout = wait_for_jobs(
            client, [], policy=policy_of(clock), resume=tampered(fanout_saved, changes)
        )
    except CheckpointError:
        return
    results = await run_resumed(fanout, clock)
    assert isinstance(results, list)
    assert [result.ok for result in results] == [True] * len(fanout_saved["jobs"])


def test_a_started_wait_with_a_timeout_but_no_deadline_is_refused() -> None:
    """A started wait (or fan-out with jobs) whose timeout is kept but whose deadline was
    removed is refused: resumed, it would never time out."""
    client = JobsClient("key", base_url="http://127.0.0.1:9")
    single = {**SAVED_FOR_HYPOTHESIS, "deadline": None}
    assert single["timeout"] is not None
    with pytest.raises(CheckpointError, match="deadline"):
        wait_for_job(client, single["job_id"], resume=single)
    fanout = {**FANOUT_SAVED_FOR_HYPOTHESIS, "deadline": None}
    assert fanout["timeout"] is not None
    assert fanout["jobs"]
    with pytest.raises(CheckpointError, match="deadline"):
        wait_for_jobs(client, [], resume=fanout)


async def test_the_answers_a_wait_got_go_through_every_checkpoint(
    service: FakeJobsService, client: JobsClient, clock: VirtualClock
) -> None:
    """How many polls got an answer is counted alike by a wait, a fan-out's row and the
    rules a queue link applies, and goes through each checkpoint: the failed polls are
    `polls - answers`."""
    policy = policy_of(clock)
    job_id = service.add_job(duration=600)
    service.inject(HttpError(503), job_id=job_id, times=2)
    saved = await checkpoint_after(client, job_id, policy, 2)
    assert saved["polls"] - saved["answers"] == 2  # the two 503s
    _rules, state, _owed = resume_job(saved, job_id, policy)
    assert (state.polls, state.answers) == (saved["polls"], saved["answers"])

    other = service.add_job(duration=600)
    service.inject(HttpError(503), job_id=other, times=1)
    taken: list[dict[str, Any]] = []

    def take_checkpoint(_job: Job) -> None:
        if not taken:  # at the first snapshot: one poll failed, one answered
            taken.append(json.loads(json.dumps(fanout.checkpoint())))

    fanout = wait_for_jobs(client, [other], policy=policy, on_update=take_checkpoint)
    await fanout
    saved_fanout = taken[0]
    (row,) = saved_fanout["jobs"]
    assert (row["polls"], row["answers"]) == (2, 1)
    resumed = json.loads(json.dumps(wait_for_jobs(client, [], resume=saved_fanout).checkpoint()))
    assert resumed["jobs"][0]["answers"] == row["answers"]

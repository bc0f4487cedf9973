"""The README's examples run as written."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import re
from pathlib import Path
from typing import Any

from jobpoll import JobResult, JobsClient, PollPolicy
from jobpoll.testing import FakeJobsService, VirtualClock

README = (Path(__file__).parent.parent / "README.md").read_text()


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


async def test_fake_service_example() -> None:
    """The README's test against the fake service passes."""
    (block,) = [block for block in python_blocks() if "async def test_my_worker" in block]
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    await namespace["test_my_worker"]()


def set_up_commands() -> list[str]:
    section = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", section, flags=re.DOTALL)


def test_set_up_commands_match_ci() -> None:
    """The first command installs the command line and runs its demo; the test command
    README.md gives is the one CI runs."""
    ci = (Path(__file__).parent.parent / ".ci" / "run").read_text()
    commands = set_up_commands()
    assert len(commands) == 2
    assert "pip install -e '.[cli]'" in commands[0]
    assert commands[0].endswith(".venv/bin/jobpoll demo")
    assert commands[1] in ci.splitlines()


def test_exit_statuses_match_the_help() -> None:
    """The README's table of exit statuses lists those the command's help lists."""
    from jobpoll._exits import exit_status_help

    in_help = re.findall(r"^  (\d+) ", exit_status_help(), flags=re.MULTILINE)
    in_readme = re.findall(r"^\| (\d+) \| ", README, flags=re.MULTILINE)
    assert in_help == in_readme == ["0", "1", "2", "3", "4", "130", "141"]


def test_every_python_block_compiles() -> None:
    """Each Python example is valid Python (the one that needs the real service included)."""
    blocks = python_blocks()
    assert len(blocks) >= 2
    for block in blocks:
        compile(block, "README.md", "exec")


def test_the_scale_out_app_is_the_example_the_tests_run() -> None:
    """The README's SAQ app is examples/saq_app.py as written (which tests/test_saq.py runs),
    its client made from the environment as everywhere else: CDQ_API_KEY and CDQ_BASE_URL."""
    (block,) = [block for block in python_blocks() if "SaqWaits(queue" in block]
    example = (Path(__file__).parent.parent / "examples" / "saq_app.py").read_text()
    assert example.endswith("\n\n" + block)
    assert "client=JobsClient," in block
    assert "JOBS_BASE_URL" not in example


async def test_worker_example_resumes_after_a_stop(tmp_path: Path) -> None:
    """The README's worker, cancelled part-way, leaves a checkpoint from which its next run
    handles every job it had not handled yet, each once."""
    (block,) = [block for block in python_blocks() if "async def worker" in block]
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(block, "README.md", "exec"), namespace)
    namespace["STATE"] = tmp_path / "waits.json"
    handled: list[str] = []
    enough = asyncio.Event()

    async def handle(result: JobResult) -> None:
        handled.append(result.job_id)
        if len(handled) == 4:
            enough.set()

    namespace["handle"] = handle
    clock = VirtualClock()
    policy = PollPolicy(
        clock=clock, sleep=clock.sleep, wall_clock=clock.wall, rng=random.Random(3).random
    )
    namespace["wait_for_jobs"] = functools.partial(namespace["wait_for_jobs"], policy=policy)
    async with FakeJobsService(clock=clock) as service:
        ids = [service.add_job(duration=60 * i) for i in range(10)]
        async with JobsClient(service.api_key, base_url=service.base_url) as client:
            run = asyncio.create_task(namespace["worker"](client, ids))
            await enough.wait()
            run.cancel()  # a deploy stops the worker
            with contextlib.suppress(asyncio.CancelledError):
                await run
            assert namespace["STATE"].exists()
            await namespace["worker"](client, [])  # the next run
    assert sorted(handled) == sorted(ids)

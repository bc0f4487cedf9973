"""The docs site builds with no warning, and each page's Python snippets run as written, as the
comment before each one says: as a program against the fake service, or driven by a test here
(or in the file it names), or only compiled where it needs the real service or a Redis."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from support import PAGES, ROOT, Snippet, snippet_run_by, snippets

import jobpoll
from jobpoll import API_KEY_ENV, BASE_URL_ENV, JobResult, JobsClient, PollPolicy
from jobpoll.testing import FakeJobsService, VirtualClock

SCRIPTS = [s for s in snippets() if s.how.startswith("script")]


def run(snippet: Snippet, **namespace: Any) -> dict[str, Any]:
    """The snippet's module namespace once its code has run (not as `__main__`)."""
    namespace.setdefault("__name__", "snippet")
    exec(compile(snippet.code, str(snippet.page), "exec"), namespace)
    return namespace


@pytest.mark.timeout(300)
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict` (CI's command) builds every page, the API reference from the
    docstrings included, with no warning: no broken link or anchor, no docstring griffe
    cannot read."""
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    output = built.stdout + built.stderr
    assert built.returncode == 0, output
    assert "WARNING" not in output
    for page in (ROOT / "docs").rglob("*.md"):
        name = page.relative_to(ROOT / "docs").with_suffix("")
        built_page = site / ("index.html" if name == Path("index") else name / "index.html")
        assert built_page.exists(), name
    reference = (site / "reference" / "jobpoll" / "index.html").read_text()
    for name in jobpoll.__all__:
        assert name == "__version__" or f'id="jobpoll.{name}"' in reference, name


def test_the_reference_lists_each_public_name_once() -> None:
    """The API reference's pages name exactly the public names of `jobpoll`, `jobpoll.testing`
    and `jobpoll.saq` (their `__all__`), each once."""
    import jobpoll.saq
    import jobpoll.testing

    for module, page in [
        (jobpoll, "jobpoll"),
        (jobpoll.testing, "testing"),
        (jobpoll.saq, "saq"),
    ]:
        text = (ROOT / "docs" / "reference" / f"{page}.md").read_text()
        listed = re.findall(rf"^::: {re.escape(module.__name__)}\.(\w+)$", text, re.M)
        assert sorted(listed) == sorted(set(module.__all__) - {"__version__"}), page


def test_every_python_block_says_how_it_is_run() -> None:
    """Each Python block of the README and the docs has a `<!-- snippet: ... -->` comment
    before it; a test it names exists in the file it names; every block compiles."""
    marked = snippets()
    for page in PAGES:
        blocks = re.findall(r"^```python$", page.read_text(), re.M)
        assert len(blocks) == len([s for s in marked if s.page == page]), page
    for snippet in marked:
        compile(snippet.code, str(snippet.page), "exec")
        how = snippet.how.split(" ", 1)[0]
        if how in ("script", "compile"):
            assert how == "script" or "(" in snippet.how, f"{snippet.name}: say why"
            continue
        path, _, test = how.partition("::")
        source = (ROOT / path).read_text()
        assert re.search(rf"^(async )?def {test}\(", source, re.M), how
        assert str(snippet.page.relative_to(ROOT)) in source or "snippet_run_by" in source
    assert SCRIPTS


@pytest.mark.timeout(120)
@pytest.mark.parametrize("snippet", SCRIPTS, ids=[s.name for s in SCRIPTS])
async def test_script_runs_as_written(snippet: Snippet, tmp_path: Path) -> None:
    """A page's program runs to its end with warnings as errors, against the fake service in
    `CDQ_BASE_URL` and `CDQ_API_KEY`, where any id is a job that ends a second after it is
    first asked for."""
    script = tmp_path / "snippet.py"
    script.write_text(snippet.code)
    async with FakeJobsService(auto_create_duration=1) as service:
        env = {**os.environ, BASE_URL_ENV: service.base_url, API_KEY_ENV: service.api_key}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-W",
            "error",
            str(script),
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        assert err == b""
        assert service.recent_requests
    assert "FINISHED" in out.decode()


async def test_fake_service_example() -> None:
    """The testing guide's test against the fake service passes."""
    namespace = run(snippet_run_by("tests/test_docs.py::test_fake_service_example"))
    await namespace["test_my_worker"]()


async def test_batch_worker_resumes_after_a_stop(tmp_path: Path) -> None:
    """The batch guide's worker, cancelled part-way, leaves a checkpoint from which its next
    run handles every job it had not handled yet, each once."""
    namespace = run(snippet_run_by("tests/test_docs.py::test_batch_worker_resumes_after_a_stop"))
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
            run_ = asyncio.create_task(namespace["worker"](client, ids))
            await enough.wait()
            run_.cancel()  # a deploy stops the worker
            with contextlib.suppress(asyncio.CancelledError):
                await run_
            assert namespace["STATE"].exists()
            await namespace["worker"](client, [])  # the next run
    assert sorted(handled) == sorted(ids)


async def test_async_app_guide(jobpoll_env: FakeJobsService, jobpoll_clock: VirtualClock) -> None:
    """The async app guide's app, on the fake service in virtual time: a wait per job started
    once, each job's state read from its wait, the outcome or the error that ended it, a bad
    id refused before anything is sent; stopping the app stops its waits."""
    namespace = run(snippet_run_by("tests/test_docs.py::test_async_app_guide"))
    app = namespace["make_app"]()
    ended = jobpoll_env.add_job(duration=1800)
    failed = jobpoll_env.add_job(duration=600, final_status="FAILED")
    endless = jobpoll_env.add_job(duration=10**9)
    async with TestClient(TestServer(app)) as http:
        for job_id in (ended, failed, "no-such-job", ended):
            assert (await http.post(f"/checks/{job_id}")).status == 202
        assert (await http.post("/checks/%20padded")).status == 400
        assert (await http.get("/checks/never-posted")).status == 404
        assert sorted(app[namespace["WAITS"]]) == sorted([ended, failed, "no-such-job"])
        tasks = app[namespace["TASKS"]]
        await asyncio.gather(*tasks)
        states = {}
        for job_id in (ended, failed, "no-such-job"):
            states[job_id] = await (await http.get(f"/checks/{job_id}")).json()
        assert (await http.post(f"/checks/{endless}")).status == 202
        assert tasks
    assert states[ended]["done"]
    assert states[ended]["error"] is None
    assert states[ended]["job"]["status"] == "FINISHED"
    assert states[failed]["done"]
    assert states[failed]["error"].startswith("JobFailedError")
    assert states[failed]["job"]["status"] == "FAILED"
    assert states["no-such-job"]["job"] is None
    assert states["no-such-job"]["error"].startswith("NotFound")
    assert not tasks  # the app's cleanup stopped the endless wait
    assert jobpoll_clock.now - jobpoll_clock.start >= 1800  # half an hour, in virtual time


def test_the_scale_out_app_is_the_example_the_tests_run() -> None:
    """The SAQ guide's app is examples/saq_app.py as written (which tests/test_saq.py runs),
    its client made from the environment as everywhere else: CDQ_API_KEY and CDQ_BASE_URL."""
    (block,) = [s.code for s in snippets() if "SaqWaits(queue" in s.code]
    example = (ROOT / "examples" / "saq_app.py").read_text()
    assert example.endswith("\n\n" + block)
    assert "client=JobsClient," in block
    assert "JOBS_BASE_URL" not in example


def test_exit_statuses_match_the_help() -> None:
    """The command line guide's table of exit statuses lists those the command's help lists."""
    from jobpoll._exits import exit_status_help

    page = (ROOT / "docs" / "guides" / "cli.md").read_text()
    in_help = re.findall(r"^  (\d+) ", exit_status_help(), flags=re.MULTILINE)
    in_page = re.findall(r"^\| (\d+) \| ", page, flags=re.MULTILINE)
    assert in_help == in_page == ["0", "1", "2", "3", "4", "130", "141"]

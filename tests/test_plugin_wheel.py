"""The pytest plugin as a user gets it: the wheel built from this tree, installed into a fresh
virtual environment with pytest and pytest-asyncio alone, runs a user's test file that uses
only the plugin's fixtures (no conftest, no configuration), in virtual time."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).parent.parent
#: What the user installs beside the wheel, at the versions this project's tests run.
PYTEST = ("pytest", "pytest-asyncio")

USERS_TESTS = '''
import os

import pytest

from jobpoll import JobsClient, wait_for_job, wait_for_jobs


async def finished(job_id):
    """The user's code: its client from CDQ_BASE_URL and CDQ_API_KEY, the default policy."""
    async with JobsClient() as client:
        job = await wait_for_job(client, job_id, timeout=7200)
    return job.succeeded


@pytest.mark.asyncio
async def test_an_hour_long_job(jobpoll_env, jobpoll_clock):
    job_id = jobpoll_env.add_job(duration=3600)
    assert await finished(job_id)
    assert 3600 <= jobpoll_clock.now - jobpoll_clock.start <= 3645


@pytest.mark.asyncio
async def test_a_batch(jobpoll_service, jobpoll_client, jobpoll_clock):
    ids = [jobpoll_service.add_job(duration=1800 * n) for n in range(1, 5)]
    results = await wait_for_jobs(jobpoll_client, ids)
    assert [result.ok for result in results] == [True] * 4
    assert jobpoll_clock.now - jobpoll_clock.start >= 7200


def test_the_environment_is_restored():
    assert "CDQ_BASE_URL" not in os.environ
    assert "CDQ_API_KEY" not in os.environ
'''


def run(*command: str | Path, cwd: Path | None = None) -> str:
    """Run `command`, its output returned; a failure shows what it printed. Its environment
    is a user's: none of this suite's settings, nor its coverage measurement (which measures
    this tree, not the wheel, and would only slow pip down)."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("CDQ_", "PYTHON", "PYTEST_", "VIRTUAL_ENV", "COVERAGE_"))
    }
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="session")
def fresh_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a new virtual environment holding the wheel built from this tree, and the
    pytest and pytest-asyncio of this one (from pip's configured index); made once a session."""
    root = tmp_path_factory.mktemp("plugin-wheel")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", root / "dist", REPOSITORY)
    (wheel,) = (root / "dist").glob("jobpoll-*.whl")
    run(sys.executable, "-m", "venv", "--without-pip", root / "venv")
    python = root / "venv" / "bin" / "python"
    requirements = [f"{name}=={importlib.metadata.version(name)}" for name in PYTEST]
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", wheel, *requirements)
    return python


@pytest.mark.timeout(600)
def test_a_users_tests_run_on_the_installed_wheel(fresh_python: Path, tmp_path: Path) -> None:
    """With only the wheel installed, a test file using the plugin's fixtures passes, its
    hour-long jobs waited for in virtual time, and jobpoll is the wheel's, not this tree's."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_users_code.py").write_text(USERS_TESTS)
    output = run(fresh_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=project)
    assert re.search(r"^3 passed in [\d.]+s$", output, flags=re.MULTILINE), output
    shown = "import jobpoll._pytest_plugin as plugin; print(plugin.__file__)"
    where = run(fresh_python, "-c", shown, cwd=project)
    assert Path(where.strip()).is_relative_to(fresh_python.parent.parent)

"""The curated public surface: what users import, and nothing else by accident."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import jobpoll
import jobpoll.testing


def test_exported_members() -> None:
    """`jobpoll.__all__` is exactly the public names, each defined in a private module."""
    assert set(jobpoll.__all__) == {
        "API_KEY_ENV",
        "BASE_URL_ENV",
        "DEFAULT_BASE_URL",
        "ApiError",
        "BadRequest",
        "CheckpointError",
        "ClientStateError",
        "ConfigurationError",
        "DecodeError",
        "Forbidden",
        "InvalidJobId",
        "Job",
        "JobFailedError",
        "JobPollError",
        "JobResult",
        "JobStalled",
        "JobStatus",
        "JobWait",
        "JobsClient",
        "JobsWait",
        "NotAcceptable",
        "NotFound",
        "PollPolicy",
        "RateLimited",
        "ServerError",
        "ServiceUnavailable",
        "TransportError",
        "Unauthorized",
        "WaitTimeout",
        "__version__",
        "wait_for_job",
        "wait_for_jobs",
    }
    for name in jobpoll.__all__:
        member = getattr(jobpoll, name)
        module = getattr(member, "__module__", "jobpoll._")
        assert module.startswith("jobpoll._"), name


def test_testing_exported_members() -> None:
    """`jobpoll.testing.__all__` is exactly the fake service and its scripting types."""
    assert set(jobpoll.testing.__all__) == {
        "Body",
        "Drop",
        "FakeJobsService",
        "Fault",
        "Headers",
        "HttpError",
        "Patch",
        "ProgressCurve",
        "RecordedRequest",
        "Redirect",
        "Slow",
        "VirtualClock",
        "linear",
    }


def test_version_comes_from_metadata() -> None:
    """`__version__` is the installed distribution's version."""
    assert jobpoll.__version__ == importlib.metadata.version("jobpoll")


def test_errors_form_one_tree() -> None:
    """Every public exception derives from `JobPollError`."""
    errors = [
        member
        for name in jobpoll.__all__
        if isinstance(member := getattr(jobpoll, name), type) and issubclass(member, Exception)
    ]
    assert len(errors) == 19
    assert all(issubclass(error, jobpoll.JobPollError) for error in errors)


def test_saq_module_is_apart() -> None:
    """`import jobpoll` loads neither saq nor redis; `jobpoll.saq` exports its few names."""
    code = (
        "import sys, jobpoll, jobpoll.testing;"
        " assert not {'saq', 'redis'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    saq = pytest.importorskip("jobpoll.saq", reason="the saq extra is not installed")
    assert set(saq.__all__) == {"POLL_FUNCTION", "SaqWaits", "load_result", "result_to_json"}


@pytest.mark.parametrize("missing", ["saq", "redis"])
def test_saq_module_without_the_extra_names_it(missing: str) -> None:
    """`import jobpoll.saq` without the saq extra (saq or redis missing) is an `ImportError`
    (a `ModuleNotFoundError`) that says what to install."""
    code = f"""
import sys
sys.modules[{missing!r}] = None
try:
    import jobpoll.saq
except ModuleNotFoundError as exc:
    print(exc.name)
    print(exc)
"""
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert ran.stdout.splitlines() == [
        missing,
        f"jobpoll.saq needs the saq extra ({missing} is missing): pip install 'jobpoll[saq]'",
    ]

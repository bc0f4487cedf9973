"""The curated public surface: what users import, and nothing else by accident."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

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
        "QueueDataLost",
        "QueueError",
        "QueueNotDurable",
        "QueueUnavailable",
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


def test_type_checkers_read_the_names_imported_at_first_use() -> None:
    """The `if TYPE_CHECKING:` imports of `jobpoll/__init__.py` are the public names, each
    from the module `jobpoll` imports it from on first use, and re-exported (`X as X`)."""
    tree = ast.parse(Path(jobpoll.__file__).read_text(encoding="utf-8"))
    [block] = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    imported = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom), ast.unparse(node)
        for alias in node.names:
            assert alias.asname == alias.name, ast.unparse(node)
            imported[alias.name] = node.module
    assert imported == jobpoll._MODULE_OF
    assert sorted(imported) == jobpoll.__all__


def test_import_loads_a_name_on_first_use() -> None:
    """`import jobpoll` loads none of its modules nor aiohttp, attrs, cattrs or backoff;
    `jobpoll.__version__` loads only its own module, and a name its module on first use."""
    code = """
import sys
import jobpoll
def loaded():
    return sorted(
        name for name in sys.modules
        if name.startswith("jobpoll.") or name in ("aiohttp", "attrs", "cattrs", "backoff")
    )
assert loaded() == [], loaded()
assert isinstance(jobpoll.__version__, str)
assert loaded() == ["jobpoll._version"], loaded()
from jobpoll import JobsClient
assert JobsClient is sys.modules["jobpoll._client"].JobsClient
assert {"aiohttp", "attrs", "cattrs"} <= set(loaded())
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_every_public_name_is_listed_and_star_imported() -> None:
    """`dir(jobpoll)` lists the public names before their first use, and
    `from jobpoll import *` binds exactly them."""
    code = "import jobpoll; assert set(jobpoll.__all__) <= set(dir(jobpoll)), dir(jobpoll)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    namespace: dict[str, object] = {}
    exec("from jobpoll import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(jobpoll.__all__)


def test_a_name_that_is_not_public_is_an_attribute_error() -> None:
    """A name that `jobpoll` does not export is the usual `AttributeError`, naming it (and
    so the interpreter's "Did you mean" works)."""
    name = "JobClient"
    with pytest.raises(AttributeError) as caught:
        getattr(jobpoll, name)
    assert str(caught.value) == "module 'jobpoll' has no attribute 'JobClient'"
    assert (caught.value.name, caught.value.obj) == (name, jobpoll)


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
        "RateLimit",
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
    assert len(errors) == 23
    assert all(issubclass(error, jobpoll.JobPollError) for error in errors)


def test_saq_module_is_apart() -> None:
    """`import jobpoll` loads neither saq nor redis; `jobpoll.saq` exports its few names."""
    code = (
        "import sys, jobpoll, jobpoll.testing;"
        " assert not {'saq', 'redis'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    saq = pytest.importorskip("jobpoll.saq", reason="the saq extra is not installed")
    assert set(saq.__all__) == {
        "POLL_FUNCTION",
        "OutcomePending",
        "QueueOverview",
        "SaqWaits",
        "Undelivered",
        "load_result",
        "result_to_json",
    }


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

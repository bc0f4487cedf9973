"""`jobpoll fake-server`: jobs and faults scripted per id pattern, from options or a file, each
option checked with a clear error; and the same checks in `FakeJobsService` and
`python -m jobpoll.testing`."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support import cli_environment, run_jobpoll

from jobpoll import JobsClient, JobStatus, NotFound, PollPolicy, ServiceUnavailable, wait_for_jobs
from jobpoll.testing import FakeJobsService, VirtualClock
from jobpoll.testing._scenario import (
    ScenarioError,
    build_scenario,
    fault_spec,
    job_spec,
    load_scenario_file,
    rate_limit_spec,
)
from jobpoll.testing._service import ScriptedService


def scenario_of(jobs: list[str] = [], faults: list[str] = [], **options: Any) -> Any:  # noqa: B006
    return build_scenario(
        None,
        jobs=[(text, job_spec(text)) for text in jobs],
        faults=[(text, fault_spec(text)) for text in faults],
        **options,
    )


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


async def poll(service: FakeJobsService, *job_ids: str) -> list[Any]:
    async with JobsClient(service.api_key, base_url=service.base_url) as client:
        answers: list[Any] = []
        for job_id in job_ids:
            try:
                answers.append(await client.get_job(job_id))
            except (NotFound, ServiceUnavailable) as exc:
                answers.append(exc)
        return answers


async def test_job_rules_by_pattern(clock: VirtualClock) -> None:
    """Ids become jobs by the first rule their pattern matches: outcome, progress where it
    ends, shape, queue time, a 404; the others run for 10 s and finish."""
    scenario = scenario_of(
        [
            "fail-*:duration=10,outcome=failed,reach=40",
            "gone-*:missing",
            "queued-*:duration=10,queued=5",
            "steps-*:duration=10,shape=steps-25",
            "text-*:duration=10,progress_as_string",
        ],
        auto_create_duration=10,
    )
    async with ScriptedService(scenario, clock=clock) as service:
        first = await poll(service, "fail-1", "gone-1", "queued-1", "steps-1", "other")
        assert isinstance(first[1], NotFound)
        assert first[2].status is JobStatus.SCHEDULED
        clock.advance(6.0)
        later = await poll(service, "steps-1", "text-1", "other", "queued-1")
        assert [job.progress for job in later] == [50, 0, 60, 20]
        clock.advance(10.0)
        done = await poll(service, "fail-1", "steps-1", "other")
        assert [(job.status, job.progress) for job in done] == [
            (JobStatus.FAILED, 40),
            (JobStatus.FINISHED, 100),
            (JobStatus.FINISHED, 100),
        ]


async def test_an_id_no_rule_covers_is_a_404_unless_auto_created(
    clock: VirtualClock, tmp_path: Path
) -> None:
    """A typo'd id is a 404 (`NotFound`), as the real service answers for an id it does not
    know; with `auto_create_duration` (an option, or a key of the file) or a last rule `*`, it
    becomes a job."""
    scenario = scenario_of(["order-*:duration=5"])
    async with ScriptedService(scenario, clock=clock) as service:
        order, typo = await poll(service, "order-1", "ordr-1")
        assert order.status is JobStatus.RUNNING
        assert isinstance(typo, NotFound)
        assert typo.job_id == "ordr-1"
    config = tmp_path / "scenario.toml"
    config.write_text('auto_create_duration = 30\n[[jobs]]\nmatch = "order-*"\nduration = 5\n')
    auto_created = build_scenario(load_scenario_file(config), source=str(config))
    catch_all = scenario_of(["order-*:duration=5", "*:duration=30"])
    for scenario in (auto_created, catch_all):
        async with ScriptedService(scenario, clock=clock) as service:
            (typo,) = await poll(service, "ordr-1")
            assert typo.status is JobStatus.RUNNING
            clock.advance(30.0)
            (typo,) = await poll(service, "ordr-1")
            assert typo.status is JobStatus.FINISHED
    with pytest.raises(ScenarioError, match=r"f\.toml: auto_create_duration must be a number"):
        build_scenario({"auto_create_duration": -1}, source="f.toml")
    # The same rule as a fake without a scenario: an id never added is a 404.
    async with FakeJobsService(clock=clock) as service:
        service.add_job("order-1")
        assert isinstance((await poll(service, "ordr-1"))[0], NotFound)


async def test_duration_ranges_and_shares_are_per_id_and_repeatable(clock: VirtualClock) -> None:
    """A duration range and a share pick per id from a hash: the same every run with the
    same seed, spread over the range and close to the share."""
    scenario = scenario_of(["*:duration=10..20,outcome=FAILED,share=0.25", "*:duration=10..20"])
    ids = [f"job-{n}" for n in range(400)]
    rules = [scenario.rule_for(job_id) for job_id in ids]
    failing = sum(rule.outcome == "FAILED" for rule in rules)
    assert 60 <= failing <= 140
    durations = [
        rule.script(job_id, 0)["duration"] for rule, job_id in zip(rules, ids, strict=True)
    ]
    assert 10 <= min(durations) < 11
    assert 19 < max(durations) <= 20
    again = scenario_of(["*:duration=10..20,outcome=FAILED,share=0.25", "*:duration=10..20"])
    assert [again.rule_for(job_id).outcome for job_id in ids] == [rule.outcome for rule in rules]
    other_seed = scenario_of(["*:share=0.25,outcome=FAILED", "*"], seed=1)
    assert [other_seed.rule_for(job_id).outcome for job_id in ids] != [r.outcome for r in rules]


async def test_fault_rules(clock: VirtualClock) -> None:
    """Faults answer a number of requests, the requests of a burst from its start for its
    length, or a share of them, for the ids their pattern matches."""
    scenario = scenario_of(
        ["*:duration=100"],
        [
            "503:times=2,match=a*,retry_after=3",
            "429:at=10,for=5",
            "500:share=0.5,at=100",
        ],
    )
    async with ScriptedService(scenario, clock=clock) as service:
        answers = await poll(service, "b", "a1", "a2", "a3")
        assert [type(answer).__name__ for answer in answers] == [
            "Job",
            "ServiceUnavailable",
            "ServiceUnavailable",
            "Job",
        ]
        assert answers[1].retry_after == 3
        clock.advance(10.0)
        base_url = service.base_url  # the client paces itself after the 429 in virtual time
        async with JobsClient(
            service.api_key, base_url=base_url, clock=clock, sleep=clock.sleep
        ) as client:
            with pytest.raises(Exception, match="HTTP 429"):
                await client.get_job("b")
            clock.advance(5.0)
            assert (await client.get_job("b")).id == "b"
            clock.advance(85.0)
            statuses = []
            for _ in range(100):
                try:
                    await client.get_job("b")
                    statuses.append(200)
                except Exception:
                    statuses.append(500)
        assert 25 <= statuses.count(500) <= 75


async def test_the_fan_out_rides_out_a_scripted_mix(clock: VirtualClock) -> None:
    """A fan-out against a fault mix and a burst still gets each job's scripted outcome (the
    jobs, the retries and the waits between them in virtual time)."""
    scenario = scenario_of(
        ["f*:duration=0.2,outcome=DIED", "*:duration=0.1..0.3"],
        ["503:share=0.2,retry_after=0.05", "drop:share=0.05", "html:times=3", "truncated:times=2"],
        seed=5,
    )
    async with (
        ScriptedService(scenario, clock=clock) as service,
        JobsClient(
            service.api_key, base_url=service.base_url, clock=clock, sleep=clock.sleep
        ) as client,
    ):
        results = await wait_for_jobs(
            client,
            [f"job-{n}" for n in range(20)] + ["f1", "f2"],
            policy=PollPolicy(initial=0.05, max_interval=0.1, clock=clock, sleep=clock.sleep),
        )
    assert [result.ok for result in results] == [True] * 20 + [False, False]
    assert all(
        result.job is not None and result.job.status is JobStatus.DIED for result in results[-2:]
    )


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        pytest.param("job", "x:duration=-5", "duration must be seconds, 0 or more", id="neg"),
        pytest.param("job", "x:duration=5..1", "or LOW..HIGH, got '5..1'", id="range"),
        pytest.param("job", "x:shape=zigzag", "shape must be one of linear", id="shape"),
        pytest.param("job", "x:outcome=FINSHED", "outcome must be one of ARCHIVED", id="typo"),
        pytest.param("job", "x:outcome=RUNNING", "outcome must be one of", id="not-an-end"),
        pytest.param("job", "x:reach=101", "reach must be a whole percent", id="reach"),
        pytest.param("job", "x:share=0", "share must be a fraction above 0", id="share"),
        pytest.param("job", "x:durations=3", "unknown key 'durations'", id="unknown-key"),
        pytest.param("job", "duration=5", "expected PATTERN:key=value", id="no-pattern"),
        pytest.param("job", "x:queued=5,duration=1", r"queued \(5 s\) must not", id="queued"),
        pytest.param("job", ":duration=1", "match must be a non-empty pattern", id="empty"),
        pytest.param("job", "x:duration=1,,", "expected key=value pairs", id="no-key"),
        pytest.param("fault", "503", "say which requests", id="how-often"),
        pytest.param("fault", "600:times=1", "kind '600' is not an HTTP status", id="status"),
        pytest.param("fault", "slow:times=1", "slow needs seconds=", id="slow"),
        pytest.param("fault", "drop:times=1,retry_after=1", "retry_after is for", id="retry"),
        pytest.param("fault", "503:times=0", "times must be 1 or more", id="times"),
        pytest.param("fault", "503:for=-1", "for must be a number of seconds", id="for"),
        pytest.param("fault", "503:share=nan", "share must be a fraction", id="nan"),
        pytest.param("fault", "²:times=1", "kind '²' is not an HTTP status", id="superscript"),
    ],
)
def test_rules_refused_with_where_and_why(kind: str, text: str, message: str) -> None:
    """A rule that cannot be served is refused whole, quoting the option and saying what is
    allowed."""
    rules = ([text], []) if kind == "job" else ([], [text])
    with pytest.raises(ScenarioError, match=message) as caught:
        scenario_of(*rules)
    assert str(caught.value).startswith(f"--{kind} {text!r}: ")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        pytest.param("port", "--port must be from 0 to 65535", id="port"),
        pytest.param("latency", "--latency must be a number, got one too large", id="latency"),
        pytest.param("auto_create_duration", "--auto-create-duration must be a number", id="auto"),
    ],
)
def test_numbers_too_large_for_a_float_are_refused(option: str, message: str) -> None:
    """A 400-digit number (click reads it as an int) is a clear error, not an
    `OverflowError`; as a seed, any whole number does."""
    with pytest.raises(ScenarioError, match=message):
        scenario_of(**{option: 10**400})
    assert scenario_of(seed=10**400).seed == 10**400


def test_file_rules_and_options(tmp_path: Path) -> None:
    """A TOML or JSON file gives rules and options; options given win; errors name the file
    and the rule."""
    toml = tmp_path / "jobs.toml"
    toml.write_text(
        'seed = 3\nlatency = 0.5\n[[jobs]]\nmatch = "a*"\nduration = [1, 2]\n'
        "[[faults]]\nkind = 503\nshare = 0.1\n"
    )
    scenario = build_scenario(load_scenario_file(toml), source=str(toml), latency=0.0)
    assert (scenario.seed, scenario.latency, scenario.jobs[0].duration) == (3, 0.0, (1.0, 2.0))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"jobs": [{"match": "a"}, {"match": "b", "reach": "x"}]}))
    with pytest.raises(ScenarioError, match=r"bad.json: jobs\[1\]: reach must be a number"):
        build_scenario(load_scenario_file(bad), source=str(bad))
    bad.write_text(json.dumps({"job": []}))
    with pytest.raises(ScenarioError, match="unknown key 'job'; expected jobs, faults"):
        build_scenario(load_scenario_file(bad), source=str(bad))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"port": 99999}, "port must be from 0 to 65535", id="port"),
        pytest.param({"port": -1}, "port must be", id="negative-port"),
        pytest.param({"auto_create_duration": -5}, "auto_create_duration must be", id="auto"),
        pytest.param({"auto_create_duration": float("nan")}, "auto_create_duration", id="nan"),
        pytest.param({"latency": -1}, "latency must be a number of seconds", id="latency"),
        pytest.param({"latency": float("inf")}, "latency must be", id="inf-latency"),
        pytest.param({"port": "80"}, "port must be a number, got '80'", id="text-port"),
        pytest.param({"latency": "1"}, "latency must be a number", id="text-latency"),
        pytest.param({"auto_create_duration": "5"}, "auto_create_duration must be", id="text"),
    ],
)
def test_service_options_checked_at_once(options: dict[str, Any], message: str) -> None:
    """`FakeJobsService` refuses options it could not serve when made, not with a 500 on every
    answer (a negative auto-create duration) or a traceback when it starts (a port past
    65535)."""
    with pytest.raises(ValueError, match=message):
        FakeJobsService(**options)


def test_a_duration_given_in_python_is_a_number() -> None:
    """`add_job` takes no text for a number: a `"5"` is a mistake in the calling code."""
    with pytest.raises(ValueError, match="duration must be a number, got '5'"):
        FakeJobsService().add_job(duration="5")  # type: ignore[arg-type]


def test_a_scenario_file_nested_too_deep_is_refused(tmp_path: Path) -> None:
    """A JSON file nested deeper than the parser goes is refused naming the file."""
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    with pytest.raises(ScenarioError, match=r"deep\.json: not valid JSON"):
        load_scenario_file(deep)


async def test_fake_server_serves_until_stopped(tmp_path: Path) -> None:
    """`jobpoll fake-server` prints its base URL and key on one JSON line, serves the scripted
    jobs and faults (options and a file), and on SIGTERM prints its counters, status 0."""
    config = tmp_path / "scenario.toml"
    config.write_text('[[jobs]]\nmatch = "gone-*"\nmissing = true\n')  # after the options
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobpoll",
        "fake-server",
        "--job",
        "fail-*:duration=0.1,outcome=FAILED,reach=40",
        "--job",
        "ok-*:duration=0.1",
        "--fault",
        "503:times=2",
        "--config",
        str(config),
        "--api-key",
        "secret-of-the-test",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=cli_environment(),
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            where = json.loads(await process.stdout.readline())
            assert set(where) == {"base_url", "api_key"}
            assert where["api_key"] == "secret-of-the-test"
            assert where["base_url"].startswith("http://127.0.0.1:")
            assert where["base_url"].endswith("/bankaccount-data/rest")
            async with JobsClient(where["api_key"], base_url=where["base_url"]) as client:
                results = await wait_for_jobs(
                    client, ["ok-1", "fail-1", "gone-1"], policy=PollPolicy(initial=0.05)
                )
            assert [result.ok for result in results] == [True, False, False]
            assert results[1].job is not None
            assert (results[1].job.status, results[1].job.progress) == (JobStatus.FAILED, 40)
            assert isinstance(results[2].error, NotFound)
            process.terminate()
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    assert err == b""
    counters = json.loads(out)
    assert counters["requests"] >= 5  # two 503s among them


async def test_fake_server_without_rules_answers_404() -> None:
    """`jobpoll fake-server` with no rule knows no job: any id is a 404, as the real service
    answers for an id it does not know."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobpoll",
        "fake-server",
        stdout=asyncio.subprocess.PIPE,
        env=cli_environment(),
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            where = json.loads(await process.stdout.readline())
            async with JobsClient(where["api_key"], base_url=where["base_url"]) as client:
                with pytest.raises(NotFound):
                    await client.get_job("35f23c03-1c22-45fe-9484-3ffe769325de")
            process.terminate()
            await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            ["--port", "99999"],
            "Invalid value for '--port': 99999 is not in the range 0<=x<=65535.",
            id="port",
        ),
        pytest.param(
            ["--port", "9" * 400],
            f"Invalid value for '--port': {'9' * 400} is not in the range",
            id="port-of-400-digits",
        ),
        pytest.param(
            ["--seed", "9" * 400],
            f"Invalid value for '--seed': {'9' * 400} is not in the range",
            id="seed-of-400-digits",
        ),
        pytest.param(
            ["--fault", "²:times=1"],
            "--fault '²:times=1': kind '²' is not an HTTP status",
            id="fault-kind-of-a-superscript-digit",
        ),
        pytest.param(
            ["--job", "x:shape=steps-²"],
            "--job 'x:shape=steps-²': shape must be one of",
            id="steps-of-a-superscript-digit",
        ),
        pytest.param(["--latency", "-1"], "--latency must be a number of seconds", id="latency"),
        pytest.param(
            ["--api-key", " padded"],
            "--api-key is refused: the API key holds characters an HTTP header cannot carry",
            id="api-key",
        ),
        pytest.param(["--job", "x:reach=200"], "--job 'x:reach=200': reach must be", id="job"),
        pytest.param(["--fault", "503"], "--fault '503': say which requests", id="fault"),
        pytest.param(["--config", "/no/such.toml"], "/no/such.toml: cannot read it", id="file"),
        pytest.param(["--rate-limit", "0"], "--rate-limit '0': rate must be", id="rate"),
        pytest.param(
            ["--rate-limit", "5:burst=0.5"], "--rate-limit '5:burst=0.5': burst must", id="burst"
        ),
        pytest.param(
            ["--rate-limit", "5:status=200"], "--rate-limit '5:status=200': status must", id="st"
        ),
        pytest.param(
            ["--rate-limit", "5:bucket=3"], "--rate-limit '5:bucket=3': unknown key", id="key"
        ),
    ],
)
async def test_fake_server_refuses_bad_options(arguments: list[str], message: str) -> None:
    """Each bad option of `jobpoll fake-server` is status 2 and one line, before serving."""
    ran = await run_jobpoll("fake-server", *arguments)
    assert ran.returncode == 2
    assert ran.stdout == ""
    assert ran.stderr == f"jobpoll fake-server: {message}" + ran.stderr.split(message, 1)[1]
    assert len(ran.stderr.splitlines()) == 1


async def test_fake_server_refuses_a_file_it_cannot_read_a_number_of(tmp_path: Path) -> None:
    """A number in the file too large for its setting (a port of 400 digits) is status 2 and
    one line naming the file, never a traceback."""
    config = tmp_path / "big.toml"
    config.write_text(f"port = {'9' * 400}\n")
    ran = await run_jobpoll("fake-server", "--config", str(config))
    assert (ran.returncode, ran.stdout) == (2, "")
    assert ran.stderr.startswith(f"jobpoll fake-server: {config}: ")
    assert len(ran.stderr.splitlines()) == 1


@pytest.fixture
async def taken_port() -> AsyncIterator[int]:
    async with FakeJobsService() as service:
        yield int(service.base_url.split(":")[2].split("/")[0])


async def test_fake_server_on_a_taken_port(taken_port: int) -> None:
    """A port in use is one line and status 1, from both fronts."""
    ran = await run_jobpoll("fake-server", "--port", str(taken_port))
    assert ran.returncode == 1
    assert ran.stderr == (
        f"jobpoll fake-server: cannot listen on 127.0.0.1:{taken_port} (Address already in use)\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobpoll.testing",
        "--port",
        str(taken_port),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 1
    assert err.decode().splitlines() == [
        f"python -m jobpoll.testing: cannot listen on 127.0.0.1:{taken_port}"
        " (Address already in use)"
    ]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(
            ["--auto-create-duration", "-5"],
            "--auto-create-duration must be a number of seconds, 0 or more (inf: never ends),"
            " got '-5'",
            id="negative-duration",
        ),
        pytest.param(["--port", "99999"], "--port must be from 0 to 65535, got '99999'", id="port"),
        pytest.param(["--latency", "inf"], "--latency must be", id="latency"),
        pytest.param(["--port", "9" * 400], "--port must be from 0", id="long-port"),
    ],
)
async def test_module_refuses_bad_options(arguments: list[str], message: str) -> None:
    """`python -m jobpoll.testing` refuses what it could not serve with argparse's usage
    error (status 2), never a traceback."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "jobpoll.testing",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 2
    assert out == b""
    assert message in err.decode()
    assert "Traceback" not in err.decode()


async def test_a_rate_limit_from_the_command_line_or_a_file(
    clock: VirtualClock, tmp_path: Path
) -> None:
    """`--rate-limit 2:burst=3,retry_after=none,status=503` (or a file's `rate_limit` table)
    puts a full token bucket in front of the service: 3 requests at once, the fourth refused
    with that status and no Retry-After, one more each half second; each service serves its
    own bucket, full."""
    text = "2:burst=3,retry_after=none,status=503"
    scenario = scenario_of(["*"], rate_limit=(text, rate_limit_spec(text)))
    config = tmp_path / "limit.toml"
    config.write_text('[rate_limit]\nrate = 2\nburst = 3\nretry_after = "none"\nstatus = 503\n')
    from_file = build_scenario(load_scenario_file(config), jobs=[("*", job_spec("*"))])
    assert from_file.rate_limit == scenario.rate_limit
    for _ in range(2):
        async with ScriptedService(scenario, clock=clock) as service:
            answers = await poll(service, "a", "b", "c", "d")
            assert [type(answer).__name__ for answer in answers] == ["Job"] * 3 + [
                "ServiceUnavailable"
            ]
            assert answers[3].retry_after is None
            clock.advance(0.5)
            assert type((await poll(service, "a"))[0]).__name__ == "Job"
    with pytest.raises(ScenarioError, match="rate_limit: rate is missing"):
        build_scenario({"rate_limit": {"burst": 2}}, source="f.toml")

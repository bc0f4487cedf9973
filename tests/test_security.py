"""The API key stays secret, redirects are not followed, plain http and bad input are refused."""

from __future__ import annotations

import contextlib
import logging
import pickle
import traceback
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from conftest import raw_bytes_server, raw_server
from hypothesis import given
from hypothesis import strategies as st

from jobpoll import (
    DEFAULT_BASE_URL,
    ApiError,
    ConfigurationError,
    DecodeError,
    InvalidJobId,
    JobPollError,
    JobsClient,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    wait_for_job,
    wait_for_jobs,
)
from jobpoll._ids import all_plain_job_ids, check_job_id, same_job_id
from jobpoll.testing import Body, Drop, FakeJobsService, HttpError, Patch, Redirect, Slow

SECRET = "sk-live-4f9c2d7e1a8b6053"


@pytest.fixture
async def secret_service() -> AsyncIterator[FakeJobsService]:
    async with FakeJobsService(api_key=SECRET) as fake:
        yield fake


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text
        assert SECRET[:8] not in text


def everything_said(error: BaseException) -> list[str]:
    """What an error shows anywhere: str, repr, the formatted traceback with its whole chain."""
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    for value in vars(error).values():
        texts.append(repr(value))
    cause = error.__cause__ or error.__context__
    while cause is not None:
        texts += [str(cause), repr(cause)]
        cause = cause.__cause__ or cause.__context__
    return texts


async def test_key_not_in_client_repr(secret_service: FakeJobsService) -> None:
    """Neither the client's repr nor its attributes' reprs show the key."""
    async with JobsClient(SECRET, base_url=secret_service.base_url) as client:
        assert_no_secret(repr(client), str(client), repr(vars(client)))


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(HttpError(401), id="401"),
        pytest.param(HttpError(429, retry_after=3), id="429"),
        pytest.param(HttpError(503), id="503"),
        pytest.param(HttpError(500), id="500"),
        pytest.param(Body("<html>proxy</html>", content_type="text/html"), id="html"),
        pytest.param(Patch({"progress": 101}), id="bad-field"),
        pytest.param(Drop(mid_body=True), id="dropped"),
        pytest.param(Slow(5.0), id="timeout"),
        pytest.param(Redirect("https://elsewhere.example/"), id="redirect"),
    ],
)
async def test_key_not_in_errors_or_logs(
    secret_service: FakeJobsService, caplog: pytest.LogCaptureFixture, fault: object
) -> None:
    """No error's str, repr, attributes or traceback, and no log record at DEBUG, has the key."""
    job_id = secret_service.add_job()
    secret_service.inject(fault)  # type: ignore[arg-type]
    caplog.set_level(logging.DEBUG)
    async with JobsClient(SECRET, base_url=secret_service.base_url, read_timeout=0.2) as client:
        with pytest.raises(JobPollError) as caught:
            await client.get_job(job_id)
    assert_no_secret(*everything_said(caught.value))
    assert caplog.records  # the client did log, at DEBUG
    for record in caplog.records:
        assert_no_secret(record.getMessage(), repr(record.args), record.exc_text or "")


async def test_key_not_in_unknown_job_error(secret_service: FakeJobsService) -> None:
    """A 404 says which job, never which key."""
    async with JobsClient(SECRET, base_url=secret_service.base_url) as client:
        with pytest.raises(NotFound) as caught:
            await client.get_job("nope")
    assert_no_secret(*everything_said(caught.value))


async def test_invalid_http_answer_hides_aiohttp_error() -> None:
    """aiohttp's ClientResponseError, whose repr prints the request headers, is not chained."""
    async with (
        raw_bytes_server(b"HTTP/1.1 abc Not A Status\r\n\r\n") as base_url,
        JobsClient(SECRET, base_url=base_url) as client,
    ):
        with pytest.raises(TransportError, match="invalid response") as caught:
            await client.get_job("j")
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    assert_no_secret(*everything_said(caught.value))


@pytest.mark.parametrize("own_session", [True, False], ids=["own-session", "caller-session"])
async def test_redirect_not_followed(secret_service: FakeJobsService, own_session: bool) -> None:
    """A redirect is an ApiError; the key never reaches the redirect's target."""
    seen: list[str | None] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get("X-API-KEY"))
        return web.json_response({})

    job_id = secret_service.add_job()
    async with raw_server(elsewhere, path="/steal") as other, contextlib.AsyncExitStack() as stack:
        session = None if own_session else await stack.enter_async_context(aiohttp.ClientSession())
        client = JobsClient(SECRET, base_url=secret_service.base_url, session=session)
        stack.push_async_callback(client.aclose)
        for status in (301, 302, 303, 307, 308):
            secret_service.inject(Redirect(other + "/steal", status=status))
            with pytest.raises(ApiError) as caught:
                await client.get_job(job_id)
            assert caught.value.http_status == status
            assert "not followed" in str(caught.value)
    assert seen == []


@pytest.mark.parametrize(
    "base_url",
    [
        "http://api.cdq.com/bankaccount-data/rest",
        "http://10.0.0.7:8080/rest",
        "http://localhost.evil.example/rest",
        "http://127.0.0.1.nip.example/rest",
    ],
)
def test_plain_http_refused(base_url: str) -> None:
    """Plain http to any host but loopback is refused: the key would travel in clear text."""
    with pytest.raises(ConfigurationError, match="refusing plain http"):
        JobsClient("k", base_url=base_url)


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:8080/bankaccount-data/rest",
        "http://127.8.9.10/rest/",
        "http://localhost:4010/bankaccount-data/rest",
        "http://[::1]:4010/rest",
        "https://api.cdq.com/bankaccount-data/rest",
        "https://api.cdq.com/bankaccount-data/rest/",
    ],
)
def test_allowed_base_urls(base_url: str) -> None:
    """https anywhere, and plain http on a loopback host, are accepted; a trailing / is fine."""
    assert JobsClient("k", base_url=base_url).base_url == base_url.rstrip("/")


@pytest.mark.parametrize(
    ("base_url", "words"),
    [
        pytest.param("ftp://api.cdq.com/rest", "absolute https URL", id="ftp"),
        pytest.param("api.cdq.com/rest", "absolute https URL", id="no-scheme"),
        pytest.param("https:///rest", "absolute https URL", id="no-host"),
        pytest.param("https://user:pw@api.cdq.com/rest", "credentials", id="credentials"),
        pytest.param("ftp://user:pw@api.cdq.com/rest", "credentials", id="ftp-credentials"),
        pytest.param("https://api.cdq.com/rest?jobId=1", "no query", id="query"),
        pytest.param("https://api.cdq.com/rest#x", "no query or fragment", id="fragment"),
        pytest.param("https://[::1/rest", "not a valid URL", id="unparsable"),
        pytest.param(8080, "must be a str", id="not-a-string"),
    ],
)
def test_bad_base_urls(base_url: str, words: str) -> None:
    """A base URL that cannot be the service is refused at construction, clearly."""
    with pytest.raises(ConfigurationError, match=words) as caught:
        JobsClient("k", base_url=base_url)
    assert "pw" not in str(caught.value)


@pytest.mark.parametrize(
    ("job_id", "words"),
    [
        pytest.param("", "empty", id="empty"),
        pytest.param("x" * 257, "257 characters", id="too-long"),
        pytest.param("abc\n", "control characters", id="newline"),
        pytest.param("a\x00b", "control characters", id="nul"),
        pytest.param("a\r\nX-Injected: 1", "control characters", id="header-injection"),
        pytest.param("a\u200bb", "control characters", id="zero-width-space"),
        pytest.param(" abc", "white space", id="leading-space"),
        pytest.param(42, "str or UUID", id="int"),
        pytest.param(None, "str or UUID", id="none"),
    ],
)
async def test_invalid_job_ids_refused(
    secret_service: FakeJobsService, job_id: object, words: str
) -> None:
    """A bad job id is InvalidJobId (a ValueError too), and nothing is sent."""
    async with JobsClient(SECRET, base_url=secret_service.base_url) as client:
        with pytest.raises(InvalidJobId, match=words) as caught:
            await client.get_job(job_id)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)
    assert secret_service.request_count() == 0


async def test_longest_job_id_accepted(secret_service: FakeJobsService) -> None:
    """A 256-character id is within bounds and sent."""
    job_id = secret_service.add_job("x" * 256)
    async with JobsClient(SECRET, base_url=secret_service.base_url) as client:
        assert (await client.get_job(job_id)).id == job_id


def test_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no api_key, CDQ_API_KEY is read; with neither, construction fails clearly."""
    monkeypatch.delenv("CDQ_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="CDQ_API_KEY"):
        JobsClient()
    monkeypatch.setenv("CDQ_API_KEY", SECRET)
    assert_no_secret(repr(JobsClient()))


async def test_key_from_environment_is_sent(
    secret_service: FakeJobsService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The key read from CDQ_API_KEY is the one the service receives."""
    monkeypatch.setenv("CDQ_API_KEY", SECRET)
    job_id = secret_service.add_job()
    async with JobsClient(base_url=secret_service.base_url) as client:
        assert (await client.get_job(job_id)).id == job_id


async def test_base_url_from_environment(
    secret_service: FakeJobsService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no base_url, CDQ_BASE_URL is read; an argument wins over it; unset, the
    production URL is used."""
    monkeypatch.setenv("CDQ_BASE_URL", secret_service.base_url)
    job_id = secret_service.add_job()
    async with JobsClient(SECRET) as client:
        assert client.base_url == secret_service.base_url
        assert (await client.get_job(job_id)).id == job_id
    assert JobsClient(SECRET, base_url="https://example.com/api").base_url == (
        "https://example.com/api"
    )
    monkeypatch.delenv("CDQ_BASE_URL")
    assert JobsClient(SECRET).base_url == DEFAULT_BASE_URL


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("", "CDQ_BASE_URL is set but empty", id="empty"),
        pytest.param("http://example.com", "CDQ_BASE_URL: refusing plain http", id="plain-http"),
        pytest.param("not a url", "CDQ_BASE_URL: base_url must be", id="no-url"),
    ],
)
def test_base_url_from_environment_refused(
    monkeypatch: pytest.MonkeyPatch, value: str, message: str
) -> None:
    """A CDQ_BASE_URL that is empty or unusable is refused, naming the variable."""
    monkeypatch.setenv("CDQ_BASE_URL", value)
    with pytest.raises(ConfigurationError, match=message):
        JobsClient(SECRET)


@pytest.mark.parametrize(
    "api_key",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param(SECRET + "\n", id="newline"),
        pytest.param(SECRET + "\r\nX-Evil: 1", id="header-injection"),
        pytest.param(SECRET + "é", id="non-ascii"),
        pytest.param(" " + SECRET, id="leading-space"),
    ],
)
def test_bad_keys_refused_without_quoting(api_key: str) -> None:
    """A key no header can carry is refused, and the message never quotes it."""
    with pytest.raises(ConfigurationError) as caught:
        JobsClient(api_key)
    assert_no_secret(str(caught.value), repr(caught.value))


async def test_missing_key_header_is_unauthorized(secret_service: FakeJobsService) -> None:
    """The fake service, like the real one, answers 401 with no key."""
    job_id = secret_service.add_job()
    async with aiohttp.ClientSession() as session:
        url = secret_service.base_url + "/bankaccounts/jobs"
        async with session.get(url, params={"jobId": job_id}) as response:
            assert response.status == 401
    async with JobsClient("wrong", base_url=secret_service.base_url) as client:
        with pytest.raises(Unauthorized):
            await client.get_job(job_id)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("connect_timeout", 0),
        ("read_timeout", -1.0),
        ("total_timeout", float("inf")),
        ("total_timeout", float("nan")),
        ("max_connections", 0),
        ("max_connections", 2.5),
        ("max_connections", True),
        ("max_body_size", -1),
    ],
)
def test_options_validated(option: str, value: object) -> None:
    """Options out of range are refused at construction, naming the option."""
    with pytest.raises(ConfigurationError, match=option):
        JobsClient("k", **{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        RateLimited(429, job_id="j", message="slow down", retry_after=2.0, error="TOO_MANY"),
        ServiceUnavailable(503, job_id="j", retry_after=None),
        DecodeError("bad", job_id="j", field="progress", snippet="{", transient=True),
        TransportError("refused", job_id="j"),
        InvalidJobId("empty"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_errors_pickle(error: JobPollError) -> None:
    """Errors survive pickling (worker pools send them between processes), attributes and all."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (str(copy), vars(copy)) == (str(error), vars(error))
    assert copy.transient == error.transient


@given(
    st.lists(
        st.one_of(
            st.text(max_size=260),
            st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=260),
            st.uuids(),
            st.integers(),
        ),
        max_size=5,
    )
)
def test_checks_of_many_ids_agree_with_one_by_one(job_ids: list[object]) -> None:
    """The check of a fan-out's whole list of ids at once passes exactly when each id
    passes `check_job_id` as the same plain string."""
    one_by_one = True
    for job_id in job_ids:
        try:
            one_by_one = one_by_one and check_job_id(job_id) is job_id
        except InvalidJobId:
            one_by_one = False
    assert all_plain_job_ids(job_ids) == one_by_one


async def test_checkpoints_hold_neither_key_nor_address(secret_service: FakeJobsService) -> None:
    """A checkpoint, stored anywhere, holds neither the API key nor the service's address:
    a wait's and a fan-out's, with polls in flight and results not handed out."""
    ids = [secret_service.add_job(duration=600), secret_service.add_job(duration=0)]
    async with JobsClient(SECRET, base_url=secret_service.base_url) as client:
        wait = wait_for_job(client, ids[0])
        await anext(wait)
        async with wait_for_jobs(client, [*ids, "missing-job"]) as fanout:
            await anext(fanout)
            saved = [repr(wait.checkpoint()), repr(fanout.checkpoint())]
    assert_no_secret(*saved)
    host = secret_service.base_url.split("//")[1].split("/")[0]
    for text in saved:
        assert host not in text


def test_ids_that_differ_in_the_case_of_ascii_letters_only_name_one_job() -> None:
    """A server's id names the asked job when they differ only in the case of ASCII letters
    (UUIDs); Unicode's case folding (`"SS"` for `"ß"`, `"FI"` for `"ﬁ"`, `K` for the Kelvin
    sign) does not make two ids one."""
    assert same_job_id("35f23c03-1c22-45fe", "35F23C03-1C22-45FE")
    assert not same_job_id("ß", "SS")
    assert not same_job_id("ﬁ", "FI")
    assert not same_job_id("\u212a1", "k1")
    assert not same_job_id("a", "b")

"""The API key never shows, whole, in part or encoded, in anything jobpoll keeps of an answer.

A real server on loopback echoes the key in every encoding a server may use, at every place
jobpoll keeps text from (a body, the fields of an error body, the reason phrase, a redirect's
`Location`, a Content-Type, a broken status or header line) and at every cut point; then no
run of 6 of the key's characters may be found in the error's str, repr, args or attributes,
in `JobResult.to_dict()`, in the log, anywhere along its `__cause__`/`__context__` chain
(`.doc`, `.args` and `__dict__` included), or in the frames its traceback keeps alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import html.entities
import json
import logging
import re
import string
import types
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from conftest import raw_bytes_server, raw_server
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from jobpoll import (
    ApiError,
    DecodeError,
    JobPollError,
    JobResult,
    JobsClient,
    PollPolicy,
    TransportError,
    wait_for_job,
)
from jobpoll._redact import MIN_RUN, Redactor
from jobpoll.testing import VirtualClock

KEY = "sk-live-4f9c2d7e1a8b/6053 x=Q"
#: A key an HTTP line can echo as is (no space).
LINE_KEY = "sk-live-4f9c2d7e1a8b/6053"
JOB_ID = "35f23c03-1c22-45fe-9484-3ffe769325de"
#: What stands around the key in what the server sends: no character a key of the tests holds.
FILL = "*"


# How a server may write each character of what it echoes.


def _named(character: str) -> str:
    names = [n for n, v in html.entities.html5.items() if v == character and n.endswith(";")]
    return "&" + min(names, key=len) if names else f"&#{ord(character)};"


ENCODINGS: dict[str, Callable[[str], str]] = {
    "plain": lambda c: c,
    "upper": str.upper,
    "json-u": lambda c: f"\\u{ord(c):04x}",
    "json-U": lambda c: f"\\u{ord(c):04X}",
    "json-slash": lambda c: "\\/" if c == "/" else c,
    "percent": lambda c: f"%{ord(c):02X}",
    "percent-lower": lambda c: f"%{ord(c):02x}",
    "form": urllib.parse.quote_plus,
    "html-decimal": lambda c: f"&#{ord(c)};",
    "html-zeros": lambda c: f"&#000{ord(c)};",
    "html-hex": lambda c: f"&#x{ord(c):x};",
    "html-named": _named,
    "js-x": lambda c: f"\\x{ord(c):02x}",
    "json-in-json": lambda c: f"\\\\u{ord(c):04x}",
    "percent-twice": lambda c: f"%25{ord(c):02X}",
}
#: Encodings that keep a JSON document valid when written inside one of its strings.
JSON_SAFE = sorted(set(ENCODINGS) - {"js-x"})


def encoded(key: str, encodings: list[str]) -> str:
    """The key, its i-th character written in the i-th encoding (the last one repeating)."""
    return "".join(ENCODINGS[encodings[min(i, len(encodings) - 1)]](c) for i, c in enumerate(key))


# What a reader may make of a text: each view undoes one more encoding.


_ESCAPE = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|x([0-9A-Fa-f]{2})|([^0-9A-Za-z]))")


def _js_unescaped(text: str) -> str:
    return _ESCAPE.sub(lambda m: m[3] or chr(int(m[1] or m[2], 16)), text)


DECODERS = (urllib.parse.unquote_plus, html.unescape, _js_unescaped)


def views(text: str) -> set[str]:
    """The text and what it reads as once one, two or three encodings are undone."""
    seen = {text}
    layer = {text}
    for _ in range(3):
        layer = {decode(view) for view in layer for decode in DECODERS} - seen
        seen |= layer
    return seen


def _folded(text: str) -> str:
    return text.lower().replace(" ", "+")


def runs(key: str) -> set[str]:
    """Every run of the key's characters that must never show (folded as the rule folds)."""
    length = min(MIN_RUN, len(key))
    folded = _folded(key)
    return {folded[i : i + length] for i in range(len(folded) - length + 1)}


def assert_hidden(key: str, texts: list[str]) -> None:
    hidden = runs(key)
    for text in texts:
        for view in views(text):
            shown = [run for run in hidden if run in _folded(view)]
            assert not shown, f"{shown[0]!r} of the key shows in {text!r}"


# Everything an error shows, or keeps reachable.


def _texts_of(value: object) -> list[str]:
    if isinstance(value, bytes | bytearray):
        return [bytes(value).decode("latin-1"), repr(value)]
    if isinstance(value, str):
        return [value, repr(value)]
    if isinstance(value, tuple | list):
        return [text for item in value for text in _texts_of(item)]
    if isinstance(value, dict):
        return [text for item in value.items() for text in _texts_of(item)]
    return [repr(value)]


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and every exception its `__cause__` and `__context__` lead to."""
    todo, seen = [error], set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]


def _frames(traceback: types.TracebackType | None) -> Iterator[types.FrameType]:
    """The frames a traceback keeps alive, but the first (the test's own, which holds the key)."""
    traceback = traceback.tb_next if traceback is not None else None
    while traceback is not None:
        yield traceback.tb_frame
        traceback = traceback.tb_next


def said(error: BaseException, records: list[logging.LogRecord]) -> list[str]:
    texts = []
    for exception in _chain(error):
        texts += [str(exception), repr(exception), *_texts_of(exception.args)]
        texts += _texts_of(vars(exception))
        texts += _texts_of(getattr(exception, "doc", None))
        for frame in _frames(exception.__traceback__):
            texts += _texts_of([v for v in frame.f_locals.values() if isinstance(v, str | bytes)])
    if isinstance(error, JobPollError):
        texts.append(json.dumps(JobResult(JOB_ID, None, error).to_dict()))
    for record in records:
        texts += [record.getMessage(), *_texts_of(record.args), record.exc_text or ""]
    return texts


# The server, and where it puts the key.


def _placed(text: str, cut: int, shift: int) -> str:
    """`text` among fill characters, starting `shift` characters from the cut point."""
    return FILL * max(0, cut + shift) + text + FILL * 40


def _job_body(**fields: str) -> str:
    body = {"id": JOB_ID, "createdAt": "2025-03-31T14:03:04Z", "status": "RUNNING"}
    # Written by hand: the encoded text goes in as JSON source, its escapes read as escapes.
    return "{" + ", ".join(f'"{k}": "{v}"' for k, v in {**body, **fields}.items()) + "}"


def _answer(place: str, text: str, shift: int) -> web.Response:
    if place == "html-start":  # the start of the body the message quotes
        return web.Response(text=_placed(text, 60, shift), content_type="text/html")
    if place == "html-snippet":  # the snippet the error keeps
        return web.Response(text=_placed(text, 200, shift), content_type="text/html")
    if place == "broken-json":
        body = "{" + _placed(text, 200, shift)
        return web.Response(text=body, content_type="application/json")
    if place == "bad-field":
        body = _job_body(progress=_placed(text, 0, shift))
        return web.Response(text=body, content_type="application/json")
    if place == "other-id":
        body = _job_body(id=_placed(text, 0, shift))
        return web.Response(text=body, content_type="application/json")
    if place == "content-type":
        headers = {"Content-Type": "text/plain; x=" + _placed(text, 500, shift)}
        return web.Response(body=b"hello", headers=headers)
    if place == "error-fields":
        value = _placed(text, 500, shift)
        fields = {"message": value, "error": value, "id": value, "path": value}
        body = "{" + ", ".join(f'"{k}": "{v}"' for k, v in fields.items()) + "}"
        return web.Response(status=400, text=body, content_type="application/json")
    if place == "reason":
        return web.Response(status=503, reason=_placed(text, 200, shift))
    assert place == "location"
    return web.Response(status=302, headers={"Location": "/" + _placed(text, 500, shift)})


#: The places whose text goes inside a JSON document that must stay valid.
JSON_PLACES = {"bad-field", "other-id", "error-fields"}
PLACES = [
    "html-start",
    "html-snippet",
    "broken-json",
    "bad-field",
    "other-id",
    "content-type",
    "error-fields",
    "reason",
    "location",
]
EXPECTED: dict[str, type[JobPollError]] = {
    "html-start": DecodeError,
    "html-snippet": DecodeError,
    "broken-json": DecodeError,
    "bad-field": DecodeError,
    "other-id": DecodeError,
    "content-type": DecodeError,
    "error-fields": ApiError,
    "reason": ApiError,
    "location": ApiError,
}


@contextlib.asynccontextmanager
async def echoing() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A server that answers as `scene` says: the place, the text it echoes, and where."""
    scene: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.Response:
        return _answer(scene["place"], scene["text"], scene["shift"])

    async with raw_server(handler) as base_url:
        yield base_url, scene


async def _error_of(client: JobsClient) -> JobPollError:
    try:
        await client.get_job(JOB_ID)
    except JobPollError as error:
        return error
    raise AssertionError("the answer was taken for a job")


def _assert_clean_chain(error: BaseException) -> None:
    assert error.__cause__ is None
    assert error.__context__ is None  # not only suppressed: gone


def _shown_runs(key: str, texts: list[str]) -> list[str]:
    hidden = runs(key)
    return [run for text in texts for view in views(text) for run in hidden if run in _folded(view)]


def _holds(condition: bool) -> None:
    assert condition


async def _check_places(
    key: str,
    encodings: list[str],
    shift: int,
    caplog: pytest.LogCaptureFixture,
    given_that: Callable[[bool], object] = _holds,
) -> None:
    async with echoing() as (base_url, scene), JobsClient(key, base_url=base_url) as client:
        # jobpoll's own words (a key that shares a run with them cannot be told from them):
        # what each place says when the server echoes nothing.
        own = []
        for place in PLACES:
            scene.update(place=place, text="", shift=shift)
            own += said(await _error_of(client), [])
        given_that(not _shown_runs(key, own))
        for place in PLACES:
            usable = [e for e in encodings if e in JSON_SAFE] or ["plain"]
            text = encoded(key, usable if place in JSON_PLACES else encodings)
            scene.update(place=place, text=text, shift=shift)
            caplog.clear()
            error = await _error_of(client)
            assert isinstance(error, EXPECTED[place]), (place, error)
            _assert_clean_chain(error)
            assert_hidden(key, said(error, caplog.records))


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("shift", [-60, -12, -3, 0, 2])
async def test_key_hidden_in_every_encoding_at_every_cut(
    encoding: str, shift: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The key, written whole in one encoding, starting before, across or after each cut
    point, shows nowhere."""
    caplog.set_level(logging.DEBUG, logger="jobpoll")
    await _check_places(KEY, [encoding], shift, caplog)


KEY_CHARACTERS = string.ascii_letters + string.digits + "-_.~+/= "


@settings(
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    key=st.text(KEY_CHARACTERS, min_size=6, max_size=48).filter(
        lambda k: k == k.strip() and len(set(k.lower())) >= 4
    ),
    encodings=st.lists(st.sampled_from(sorted(ENCODINGS)), min_size=1, max_size=48),
    shift=st.integers(-120, 8),
)
def test_key_hidden_whatever_key_encoding_and_cut(
    key: str, encodings: list[str], shift: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Any key, its characters each in any encoding, anywhere about the cut points: no run of
    6 of its characters shows."""
    caplog.set_level(logging.DEBUG, logger="jobpoll")
    asyncio.run(_check_places(key, encodings, shift, caplog, given_that=assume))


@pytest.mark.parametrize(
    "line",
    [
        pytest.param(b"HTTP/1.1 abc %s\r\n\r\n", id="status-line"),
        pytest.param(b"HTTP/1.1 200 OK\r\nBad Header %s\r\n\r\n", id="header-line"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 5%s\r\n\r\n", id="header-value"),
    ],
)
@pytest.mark.parametrize("encoding", ["plain", "percent", "js-x", "html-hex"])
async def test_key_hidden_in_a_broken_answer(
    line: bytes, encoding: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A status or header line aiohttp cannot read, quoted in its message, hides the key."""
    caplog.set_level(logging.DEBUG, logger="jobpoll")
    answer = line % encoded(LINE_KEY, [encoding]).encode()
    async with (
        raw_bytes_server(answer) as base_url,
        JobsClient(LINE_KEY, base_url=base_url) as client,
    ):
        error = await _error_of(client)
    assert isinstance(error, TransportError)
    _assert_clean_chain(error)
    assert_hidden(LINE_KEY, said(error, caplog.records))


async def test_no_body_reachable_from_a_broken_body() -> None:
    """A body that is no JSON leaves no `json.JSONDecodeError` (whose `doc` is the whole body)
    behind its `DecodeError`."""
    body = "not json " + KEY + FILL * 300

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/json")

    async with raw_server(handler) as base_url, JobsClient(KEY, base_url=base_url) as client:
        error = await _error_of(client)
    assert isinstance(error, DecodeError)
    _assert_clean_chain(error)
    assert not error.__suppress_context__
    assert all(not hasattr(e, "doc") for e in _chain(error))
    assert error.snippet.startswith("not json <redacted>")


@pytest.mark.parametrize("encoding", ["plain", "json-u", "percent", "html-decimal"])
async def test_key_hidden_in_a_valid_jobs_user_and_status(encoding: str) -> None:
    """A valid answer whose `user` (documented as the user or API key owning the job) or
    status string holds the key: the `Job`, a `WaitTimeout` quoting it, `to_dict()` and the
    log show `<redacted>` instead."""
    user = encoded(KEY, [encoding])
    body = _job_body(user=user, status="RUNNING " + user)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="application/json")

    clock = VirtualClock()
    policy = PollPolicy(clock=clock, sleep=clock.sleep)
    records: list[logging.LogRecord] = []
    handler_ = _Collect(records)
    logger = logging.getLogger("jobpoll")
    logger.addHandler(handler_)
    logger.setLevel(logging.DEBUG)
    try:
        async with raw_server(handler) as base_url, JobsClient(KEY, base_url=base_url) as client:
            job = await client.get_job(JOB_ID)
            with pytest.raises(JobPollError) as caught:
                await wait_for_job(client, JOB_ID, policy=policy, timeout=30)
    finally:
        logger.removeHandler(handler_)
        logger.setLevel(logging.NOTSET)
    assert job.user == "<redacted>"
    assert job.raw_status == "RUNNING <redacted>"
    error = caught.value
    result = JobResult(JOB_ID, job, error)
    texts = [repr(job), str(error), json.dumps(result.to_dict()), *_texts_of(error)]
    texts += [record.getMessage() for record in records]
    assert_hidden(KEY, texts)


class _Collect(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_a_short_key_hidden_whole() -> None:
    """A key shorter than a run worth hiding (only ever seen in tests) is hidden whole."""
    key = "Zq9"

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="key zq9, &#90;q%39 and Zq9!", content_type="text/html")

    async with raw_server(handler) as base_url, JobsClient(key, base_url=base_url) as client:
        error = await _error_of(client)
    assert isinstance(error, DecodeError)
    assert error.snippet == "key <redacted>, <redacted> and <redacted>!"


# The rule itself, without a server.


@given(
    key=st.text(KEY_CHARACTERS, min_size=1, max_size=64),
    encodings=st.lists(st.sampled_from(sorted(ENCODINGS)), min_size=1, max_size=64),
    before=st.text(st.characters(codec="ascii"), max_size=300),
    after=st.text(st.characters(codec="ascii"), max_size=40),
    cut=st.integers(0, 400),
)
def test_no_run_survives_redaction_and_cut(
    key: str, encodings: list[str], before: str, after: str, cut: int
) -> None:
    """Whatever stands around the key, and wherever the text is cut after redaction, no run of
    `MIN_RUN` of the key's characters (or the whole of a shorter key) is left in any view."""
    text = before + encoded(key, encodings) + after
    kept = Redactor(key).cut(text, cut)
    hidden = runs(key)
    for view in views(kept):
        assert not [run for run in hidden if run in _folded(view)]


@given(
    key=st.text(string.ascii_letters + string.digits, min_size=MIN_RUN, max_size=40),
    data=st.data(),
)
def test_text_sharing_shorter_runs_is_kept(key: str, data: st.DataObject) -> None:
    """Pieces of the key shorter than a run, apart, are left as they are: only runs are hidden."""
    pieces = data.draw(
        st.lists(st.tuples(st.integers(0, len(key) - 1), st.integers(1, MIN_RUN - 1)), max_size=10)
    )
    text = FILL.join(key[start : start + length] for start, length in pieces)
    assert Redactor(key)(text) == text


def test_redactor_repr_shows_nothing() -> None:
    """The redactor holds pieces of the key: its repr shows none."""
    assert repr(Redactor(KEY)) == "<Redactor>"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("abc&#47-ghi", id="decimal"),
        pytest.param("abc&#x2F-ghi", id="hex"),
        pytest.param("abc&sol-ghi", id="named"),
    ],
)
def test_references_without_semicolon(text: str) -> None:
    """An HTML character reference without its `;` is read too."""
    assert Redactor("abc/-ghi")(text) == "<redacted>"


def test_a_cut_inside_an_encoded_character() -> None:
    """A cut that ends inside an encoded character, making it read as another (`&#0001023`
    cut to `&#000102` is `f`), leaves no run of the key."""
    text = "abcde&#0001023"
    cut = Redactor("abcdefgh").cut(text, len(text) - 1)
    assert cut == "<redacted>"

"""Reading an answer of the service: a `Job`, or the `ApiError` (with its `Retry-After`) or
`DecodeError` that says why not. Errors are returned, for the client to raise from a frame
that holds no body.
"""

from __future__ import annotations

import functools
import math
import time
from email.utils import parsedate_to_datetime

import attrs
from multidict import CIMultiDictProxy

from jobpoll._errors import ApiError, DecodeError, api_error_for_status
from jobpoll._ids import same_job_id
from jobpoll._models import Job, structure_job
from jobpoll._redact import ROOM, Redactor
from jobpoll._wire import WireError, json_object

#: The most characters of a body a `DecodeError` keeps (its `snippet`).
SNIPPET_LENGTH = 200
#: The most characters of a body a `DecodeError`'s message quotes.
_START_LENGTH = 60
#: The most characters kept of each field of an error body, and of a header.
ERROR_FIELD_LENGTH = 500


def decode_job(body: bytes | str, *, job_id: str | None = None) -> Job:
    """A `Job` from a response body, or a `WireError`. When the body names `job_id`'s job,
    the `Job` holds the caller's spelling of the id."""
    data = json_object(body)
    answered = data.get("id")
    if job_id is not None and type(answered) is str and same_job_id(job_id, answered):
        data["id"] = job_id
    return structure_job(data)


def job_of(
    job_id: str,
    http_status: int,
    headers: CIMultiDictProxy[str],
    body: bytes | None,
    cap: int,
    redact: Redactor,
) -> Job | DecodeError:
    """The job a 2xx answer holds, or the `DecodeError` that says why it holds none."""
    content_type = headers.get("Content-Type")
    field, transient = None, False
    if body is None:
        message = f"body larger than the cap of {cap} bytes"
    elif not is_json(content_type):
        # An HTML page or plain text on a 2xx is an intermediary talking, not the service.
        shown = redact.cut(content_type or "", ERROR_FIELD_LENGTH)
        message, transient = f"expected a JSON body, got Content-Type {shown}", True
    else:
        try:
            job = decode_job(body, job_id=job_id)
        except WireError as exc:
            message, field, transient = redact(str(exc)), exc.field, exc.malformed
        else:
            if job.id == job_id:
                return _shown(job, redact)
            shown = redact.cut(job.id, SNIPPET_LENGTH)
            message, field = f"id: the answer is about job {shown!r}", "id"
    snippet = ""
    if body:
        text = _printable(body[: SNIPPET_LENGTH + ROOM].decode("utf-8", "replace"))
        snippet = redact.cut(text, SNIPPET_LENGTH)
    if field is None and snippet:
        # The body as a whole is wrong: its start tells a proxy's page from a bug.
        message += f"; body starts {snippet[:_START_LENGTH]!r}"
    return DecodeError(
        f"job {job_id!r}: {message}",
        job_id=job_id,
        field=field,
        snippet=snippet,
        content_type=redact.cut(content_type, ERROR_FIELD_LENGTH) if content_type else None,
        http_status=http_status,
        transient=transient,
    )


def _shown(job: Job, redact: Redactor) -> Job:
    """The job with the key hidden in its status string and user (which the service
    documents as the user or API key that owns the job)."""
    user = job.user
    shown_user = None if user is None else redact.field(user)
    shown_status = redact.field(job.raw_status)
    if shown_user is user and shown_status is job.raw_status:
        return job
    return attrs.evolve(job, user=shown_user, raw_status=shown_status)


def _printable(text: str) -> str:
    """Server text fit for a log line: control characters (a forged line break) become spaces."""
    return "".join(c if c.isprintable() else " " for c in text)


@functools.lru_cache(maxsize=32)  # servers send one or two distinct values, on every poll
def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type may be a job's: JSON, or no claim either way."""
    if not content_type:
        return True  # no claim either way: let the body speak
    mime = content_type.partition(";")[0].strip().lower()
    # application/octet-stream is what RFC 9110 says to assume when a server names no type.
    return mime in ("application/json", "application/octet-stream") or mime.endswith("+json")


def error_of(
    job_id: str,
    http_status: int,
    reason: str | None,
    headers: CIMultiDictProxy[str],
    body: bytes | None,
    redact: Redactor,
) -> ApiError:
    """The `ApiError` an answer of any status but 2xx stands for."""
    fields = _error_fields(body, redact)
    message = fields.get("message")
    if 300 <= http_status <= 399:
        location = redact.cut(headers.get("Location", "nowhere"), ERROR_FIELD_LENGTH)
        message = f"redirect to {location} not followed (the API key goes to base_url only)"
    if reason:
        reason = redact.cut(_printable(reason[: SNIPPET_LENGTH + ROOM]), SNIPPET_LENGTH)
    return api_error_for_status(http_status)(
        http_status,
        job_id=job_id,
        reason=reason or None,
        message=message,
        error=fields.get("error"),
        error_id=fields.get("id"),
        path=fields.get("path"),
        retry_after=parse_retry_after(headers.get("Retry-After"), headers.get("Date")),
    )


def _error_fields(body: bytes | None, redact: Redactor) -> dict[str, str]:
    """The string fields of a documented error body, redacted and cut."""
    try:
        data = json_object(body or b"")
    except WireError:
        return {}
    return {
        key: redact.cut(value, ERROR_FIELD_LENGTH)
        for key in ("message", "error", "id", "path")
        if isinstance(value := data.get(key), str) and value
    }


def parse_retry_after(value: str | None, date: str | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (seconds or an HTTP-date): finite and 0 or
    more, or None when unreadable, never an exception. An HTTP-date is measured against the
    response's `Date` header when there is one, so a skewed local clock does not change it."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if 0 <= seconds < math.inf else None
    moment = _http_date(value)
    if moment is None:
        return None
    now = _http_date(date) if date else None
    if now is None:
        now = time.time()
    seconds = moment - now
    return max(0.0, seconds) if seconds < math.inf else None


def _http_date(value: str) -> float | None:
    """The POSIX time of an HTTP-date, or None when it is no date the calendar holds."""
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        # OverflowError: a year too large for the calendar (or for a C long).
        return None

"""Every way a jobpoll call can fail, as one tree under `JobPollError`.

```
JobPollError                  base of everything jobpoll raises
├── ConfigurationError        bad API key, base URL or option (also a ValueError)
├── ClientStateError          the client cannot send: closed, or another event loop's
│                             (also a RuntimeError)
├── InvalidJobId              a job id refused before anything is sent (also a ValueError)
├── CheckpointError           a checkpoint that cannot be resumed (also a ValueError)
├── ApiError                  the server answered with an error status
│   ├── BadRequest            400
│   ├── Unauthorized          401: missing or wrong API key
│   ├── Forbidden             403: the key may not use the service
│   ├── NotFound              404: no such job (or not visible yet)
│   ├── NotAcceptable         406
│   ├── RateLimited           429, with `retry_after`            (transient)
│   ├── ServiceUnavailable    503, with `retry_after`            (transient)
│   └── ServerError           any other 5xx                      (transient)
├── TransportError            no answer: refused, reset, timed out (transient); a TLS or
│                             name-resolution failure (not transient)
├── DecodeError               an answer that is not a valid job
├── JobFailedError            the job ended FAILED, DIED, COULDNT_START or CANCELED
├── JobStalled                the job did not change for the policy's `stall_timeout`
├── WaitTimeout               the wait's deadline passed first (also a TimeoutError)
├── OutcomePending            `jobpoll.saq`: the job's outcome is not delivered yet, so it
│                             cannot be forgotten (also a RuntimeError)
└── QueueError                the Redis under a `jobpoll.saq` queue failed the waits
    ├── QueueUnavailable      Redis could not be reached, or refused a command (a full
    │                         Redis: transient)
    ├── QueueNotDurable       Redis's settings would lose waits: it evicts keys, keeps no
    │                         copy on disk, or does not let them be read
    └── QueueDataLost         Redis lost the queue's data (restarted empty, flushed)
```

Nothing else escapes a jobpoll call but `asyncio.CancelledError`, a `TypeError` for an
argument of the wrong kind, and what the caller's own `on_update` raises. No error holds the
API key, a request or an aiohttp exception. Each attribute `JobResult.to_dict` writes is
declared on its error class, with the type `JobResult.from_dict` reads it back as.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobpoll._models import Job


def restored(cls: type[JobPollError], args: tuple[Any, ...], state: dict[str, Any]) -> JobPollError:
    """An error made without its constructor: how errors are unpickled and read back."""
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class JobPollError(Exception):
    """Base class of every error jobpoll raises.

    Attributes:
        job_id: the job the failed call was about, when there was one.
        transient: whether the same call may succeed if tried again later.
        affects_all: whether the error is about the caller's setup, not one job (a refused
            key, a closed client, a certificate or host name that fails before any answer).
    """

    job_id: str | None = None
    transient: bool = False
    affects_all: bool = False

    @property
    def stops_all(self) -> bool:
        """Whether every wait should stop, not only this job's: the error `affects_all`, or no
        server has ever answered (the rule of `wait_for_jobs`, the CLI and `jobpoll.saq`)."""
        return self.affects_all

    @property
    def throttles(self) -> bool:
        """Whether every poll should slow down: a 429, a 503, or no connection."""
        return False

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries in worker pools, and the default pickling calls
        # the constructor with `args`, which is not what it takes.
        return (restored, (type(self), self.args, dict(self.__dict__)))


class ConfigurationError(JobPollError, ValueError):
    """A client (or `SaqWaits`) was configured with a missing or unusable API key, base URL,
    queue or option."""

    affects_all = True


class ClientStateError(JobPollError, RuntimeError):
    """The client cannot send: it or the caller's session under it is closed, or it is used
    from another event loop than its session's."""

    affects_all = True


class InvalidJobId(JobPollError, ValueError):
    """A job id was refused before any request was sent (empty, too long, control characters)."""


class CheckpointError(JobPollError, ValueError):
    """A checkpoint given to `resume=` cannot be resumed (an unknown version, another job's,
    a value altered into nonsense: the message names the field), or `checkpoint()` was
    called on a wait that ended with an error."""


class ApiError(JobPollError):
    """The server answered with an HTTP error status, which decides the class (whatever the
    body's `status` says).

    Attributes:
        http_status: the status of the HTTP response.
        message: the server's `message`, when its body had one.
        error: the server's `error` code (e.g. "BAD_REQUEST"), when its body had one.
        error_id: the server's `id` for this error, worth quoting to its support.
        path: the server's `path`, when its body had one.
        retry_after: seconds the server asked us to wait (`Retry-After`), or None.
    """

    http_status: int
    message: str | None
    error: str | None
    error_id: str | None
    path: str | None
    retry_after: float | None

    def __init__(
        self,
        http_status: int,
        *,
        job_id: str | None = None,
        message: str | None = None,
        error: str | None = None,
        error_id: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
        reason: str | None = None,
    ) -> None:
        text = f"HTTP {http_status}"
        if reason:
            text += f" {reason}"
        if job_id is not None:
            text += f" for job {job_id!r}"
        if message:
            text += f": {message}"
        if error_id:
            text += f" (error id {error_id})"
        super().__init__(text, job_id=job_id)
        self.http_status = http_status
        self.message = message
        self.error = error
        self.error_id = error_id
        self.path = path
        self.retry_after = retry_after
        # Statuses a later try may cure: timeouts, rate limits and the server's own failures.
        self.transient = http_status in (408, 425, 429) or http_status >= 500

    @property
    def throttles(self) -> bool:
        return self.http_status in (429, 503)


class BadRequest(ApiError):
    """400: the server refused the request as malformed."""


class Unauthorized(ApiError):
    """401: the API key is missing or not accepted (about the key, so `affects_all`)."""

    affects_all = True


class Forbidden(ApiError):
    """403: the API key may not use the service (about the key, so `affects_all`)."""

    affects_all = True


class NotFound(ApiError):
    """404: no job with this id (right after creation this can be a visibility delay)."""


class NotAcceptable(ApiError):
    """406: the server cannot answer in JSON (its reference calls this 'Unsupported Media Type')."""


class RateLimited(ApiError):
    """429: too many requests; `retry_after` says how long the server wants us to wait."""


class ServiceUnavailable(ApiError):
    """503: the service is down or overloaded; `retry_after` may say for how long."""


class ServerError(ApiError):
    """Any other 5xx: the server failed to answer."""


_API_ERRORS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    406: NotAcceptable,
    429: RateLimited,
    503: ServiceUnavailable,
}


def api_error_for_status(http_status: int) -> type[ApiError]:
    """The most specific `ApiError` class for an HTTP status."""
    default = ServerError if 500 <= http_status <= 599 else ApiError
    return _API_ERRORS.get(http_status, default)


class TransportError(JobPollError):
    """No usable answer arrived: connection refused or reset, a timeout, a TLS failure.

    Attributes:
        reached: whether a connection to the server was made before the failure; False when
            it was refused, timed out, or its host name did not resolve.
        never_answered: True when no request of this client has had an answer yet (the
            base URL or port may be wrong, or the service down); the message says so too.
        transient: False (and `affects_all`) for a failed TLS handshake or a host name that
            does not exist while the client has never had an answer: a wrong setup.
    """

    reached: bool
    never_answered: bool

    def __init__(
        self,
        message: str,
        *,
        job_id: str | None = None,
        reached: bool = True,
        never_answered: bool = False,
        transient: bool = True,
    ) -> None:
        super().__init__(message, job_id=job_id)
        self.reached = reached
        self.never_answered = never_answered
        self.transient = transient
        self.affects_all = not transient

    @property
    def stops_all(self) -> bool:
        return self.affects_all or self.never_answered

    @property
    def throttles(self) -> bool:
        return not self.reached


class DecodeError(JobPollError):
    """The server answered 2xx, but not with a valid job.

    Attributes:
        field: the wire name of the invalid field (e.g. "progress"), or None when the body as a
            whole was wrong.
        snippet: at most the first 200 characters of the body, for the log (control
            characters as spaces, the key hidden).
        content_type: the response's Content-Type, or None.
        http_status: the response's status.
        transient: True when the body looks like an intermediary's page (HTML, not JSON,
            truncated JSON); False for well-formed JSON with a wrong value, or a body over
            the size cap.
    """

    field: str | None
    snippet: str
    content_type: str | None
    http_status: int

    def __init__(
        self,
        message: str,
        *,
        job_id: str | None = None,
        field: str | None = None,
        snippet: str = "",
        content_type: str | None = None,
        http_status: int = 200,
        transient: bool = False,
    ) -> None:
        super().__init__(message, job_id=job_id)
        self.field = field
        self.snippet = snippet
        self.content_type = content_type
        self.http_status = http_status
        self.transient = transient


class JobFailedError(JobPollError):
    """The job ended without doing its work: FAILED, DIED, COULDNT_START or CANCELED (the
    job's status at the service, not a cancelled asyncio task).

    Attributes:
        job: the job's final snapshot; `job.status` says which failure it was.
    """

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id!r} ended {job.raw_status} at {job.progress}%", job_id=job.id)
        self.job = job


class JobStalled(JobPollError):
    """Neither the job's status nor its progress changed for the policy's `stall_timeout`.

    Attributes:
        job: the last snapshot, the one that did not change.
        unchanged_for: seconds since the job last changed (or was first seen).
    """

    unchanged_for: float

    def __init__(self, job: Job, unchanged_for: float) -> None:
        super().__init__(
            f"job {job.id!r} has not changed for {unchanged_for:.0f} s "
            f"({job.raw_status} at {job.progress}%)",
            job_id=job.id,
        )
        self.job = job
        self.unchanged_for = unchanged_for


class WaitTimeout(JobPollError, TimeoutError):
    """The wait's deadline passed before the job ended (a `TimeoutError` too).

    Attributes:
        job: the last snapshot seen, or None when no poll got an answer.
        timeout: the deadline the wait was given, in seconds.
        last_error: the error of the last poll when it failed, else None; also the
            `__cause__`, and quoted in the message.
    """

    timeout: float
    last_error: JobPollError | None

    def __init__(
        self,
        job_id: str,
        *,
        timeout: float,
        job: Job | None = None,
        last_error: JobPollError | None = None,
    ) -> None:
        seen = f"last seen {job.raw_status} at {job.progress}%" if job else "never seen"
        if last_error is not None:
            seen += f"; the last poll failed: {last_error}"
        super().__init__(f"job {job_id!r} did not end within {timeout:g} s ({seen})", job_id=job_id)
        self.job = job
        self.timeout = timeout
        self.last_error = last_error


class OutcomePending(JobPollError, RuntimeError):
    """`SaqWaits.forget` was asked to forget a job whose outcome is still to come: the job is
    still waited for, or its outcome is queued for delivery to `on_outcome`."""


class QueueError(JobPollError):
    """The Redis under a `jobpoll.saq` queue failed the waits (the Redis error, if any, is the
    `__cause__`; no message holds its password)."""


class QueueUnavailable(QueueError):
    """Redis could not be reached, did not answer in time, or refused a command; `transient`
    for a lost connection or a full Redis (out of memory), which a later try may find cured."""


class QueueNotDurable(QueueError):
    """Redis's settings would lose waits, so a worker or `submit()` refuses to run on it.

    Attributes:
        setting: the Redis setting to change (`maxmemory-policy`, `appendonly`), or the one
            that could not be read.
        value: its value, or None when it could not be read.
    """

    affects_all = True
    setting: str
    value: str | None

    def __init__(self, message: str, *, setting: str, value: str | None) -> None:
        super().__init__(message)
        self.setting = setting
        self.value = value


class QueueDataLost(QueueError):
    """Redis lost the queue's data since this process first saw it (restarted without
    persistence, flushed): the waits submitted before are gone, and will never end."""

    affects_all = True

"""An embedded fake of CDQ's job-status endpoint (`FakeJobsService`), for demos and for your
own tests, and the `VirtualClock` that runs it and a `PollPolicy` without sleeping."""

from jobpoll.testing._clock import VirtualClock
from jobpoll.testing._faults import (
    Body,
    Drop,
    Fault,
    Headers,
    HttpError,
    Patch,
    RateLimit,
    Redirect,
    Slow,
)
from jobpoll.testing._rules import ProgressCurve, linear
from jobpoll.testing._service import FakeJobsService, RecordedRequest

__all__ = [
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
]

"""An embedded fake of CDQ's job-status endpoint, for demos and for your own tests.

`FakeJobsService` is a real `aiohttp.web` server on a loopback port, scripted with jobs and
faults; `VirtualClock` runs it and a `PollPolicy` in virtual time, so a wait on an hour-long
job takes milliseconds.
"""

from jobpoll.testing._clock import VirtualClock
from jobpoll.testing._faults import Body, Drop, Fault, Headers, HttpError, Patch, Redirect, Slow
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
    "RecordedRequest",
    "Redirect",
    "Slow",
    "VirtualClock",
    "linear",
]

"""An embedded fake of CDQ's job-status endpoint, for demos and for your own tests.

`FakeJobsService` is a real `aiohttp.web` server on a loopback port: your code talks real HTTP
to it, the way it will talk to the service. Script jobs with `add_job`, faults with `inject`,
and read back what was asked with `request_count`, `peak_in_flight` and `recent_requests`.
An id never added is a 404, as the real service answers for an id it does not know (so a
typo fails in your tests as it will in production), unless `auto_create_duration` is set.
`VirtualClock` runs the service and a `PollPolicy` in virtual time, so a wait on an hour-long
job takes milliseconds.
"""

from jobpoll.testing._clock import VirtualClock
from jobpoll.testing._faults import Body, Drop, Fault, Headers, HttpError, Patch, Redirect, Slow
from jobpoll.testing._script import ProgressCurve, linear
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

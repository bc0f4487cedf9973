"""jobpoll: wait on CDQ Bankaccount Data API jobs from asyncio code.

The public API is what `__all__` lists, each name imported from its module when first read
(PEP 562), so that the command line has its Ctrl-C handler in place before aiohttp is.
"""

import importlib
import sys
from typing import TYPE_CHECKING

_MODULE_OF = {
    "API_KEY_ENV": "jobpoll._config",
    "BASE_URL_ENV": "jobpoll._config",
    "DEFAULT_BASE_URL": "jobpoll._config",
    "ApiError": "jobpoll._errors",
    "BadRequest": "jobpoll._errors",
    "CheckpointError": "jobpoll._errors",
    "ClientStateError": "jobpoll._errors",
    "ConfigurationError": "jobpoll._errors",
    "DecodeError": "jobpoll._errors",
    "Forbidden": "jobpoll._errors",
    "InvalidJobId": "jobpoll._errors",
    "Job": "jobpoll._models",
    "JobFailedError": "jobpoll._errors",
    "JobPollError": "jobpoll._errors",
    "JobResult": "jobpoll._models",
    "JobStalled": "jobpoll._errors",
    "JobStatus": "jobpoll._models",
    "JobWait": "jobpoll._wait",
    "JobsClient": "jobpoll._client",
    "JobsWait": "jobpoll._fanout",
    "NotAcceptable": "jobpoll._errors",
    "NotFound": "jobpoll._errors",
    "PollPolicy": "jobpoll._policy",
    "QueueDataLost": "jobpoll._errors",
    "QueueError": "jobpoll._errors",
    "QueueNotDurable": "jobpoll._errors",
    "QueueUnavailable": "jobpoll._errors",
    "RateLimited": "jobpoll._errors",
    "ServerError": "jobpoll._errors",
    "ServiceUnavailable": "jobpoll._errors",
    "TransportError": "jobpoll._errors",
    "Unauthorized": "jobpoll._errors",
    "WaitTimeout": "jobpoll._errors",
    "__version__": "jobpoll._version",
    "wait_for_job": "jobpoll._wait",
    "wait_for_jobs": "jobpoll._fanout",
}

if TYPE_CHECKING:
    # What type checkers read instead of `__getattr__` (a test holds it equal to `_MODULE_OF`).
    from jobpoll._client import JobsClient as JobsClient
    from jobpoll._config import API_KEY_ENV as API_KEY_ENV
    from jobpoll._config import BASE_URL_ENV as BASE_URL_ENV
    from jobpoll._config import DEFAULT_BASE_URL as DEFAULT_BASE_URL
    from jobpoll._errors import ApiError as ApiError
    from jobpoll._errors import BadRequest as BadRequest
    from jobpoll._errors import CheckpointError as CheckpointError
    from jobpoll._errors import ClientStateError as ClientStateError
    from jobpoll._errors import ConfigurationError as ConfigurationError
    from jobpoll._errors import DecodeError as DecodeError
    from jobpoll._errors import Forbidden as Forbidden
    from jobpoll._errors import InvalidJobId as InvalidJobId
    from jobpoll._errors import JobFailedError as JobFailedError
    from jobpoll._errors import JobPollError as JobPollError
    from jobpoll._errors import JobStalled as JobStalled
    from jobpoll._errors import NotAcceptable as NotAcceptable
    from jobpoll._errors import NotFound as NotFound
    from jobpoll._errors import QueueDataLost as QueueDataLost
    from jobpoll._errors import QueueError as QueueError
    from jobpoll._errors import QueueNotDurable as QueueNotDurable
    from jobpoll._errors import QueueUnavailable as QueueUnavailable
    from jobpoll._errors import RateLimited as RateLimited
    from jobpoll._errors import ServerError as ServerError
    from jobpoll._errors import ServiceUnavailable as ServiceUnavailable
    from jobpoll._errors import TransportError as TransportError
    from jobpoll._errors import Unauthorized as Unauthorized
    from jobpoll._errors import WaitTimeout as WaitTimeout
    from jobpoll._fanout import JobsWait as JobsWait
    from jobpoll._fanout import wait_for_jobs as wait_for_jobs
    from jobpoll._models import Job as Job
    from jobpoll._models import JobResult as JobResult
    from jobpoll._models import JobStatus as JobStatus
    from jobpoll._policy import PollPolicy as PollPolicy
    from jobpoll._version import __version__ as __version__
    from jobpoll._wait import JobWait as JobWait
    from jobpoll._wait import wait_for_job as wait_for_job
else:
    # Not for type checkers: they would take any name, a misspelt one too, through a module
    # `__getattr__`, and see no name of an `__all__` that is no literal list.
    __all__ = sorted(_MODULE_OF)

    def __getattr__(name: str) -> object:
        if name not in _MODULE_OF:
            raise AttributeError(
                f"module {__name__!r} has no attribute {name!r}",
                name=name,
                obj=sys.modules[__name__],
            )
        value = getattr(importlib.import_module(_MODULE_OF[name]), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})

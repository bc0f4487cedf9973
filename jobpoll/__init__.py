"""jobpoll: wait on CDQ Bankaccount Data API jobs from asyncio code.

The public API is what `__all__` lists; everything in a module whose name starts with an
underscore is private.
"""

from jobpoll._client import JobsClient
from jobpoll._config import API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL
from jobpoll._errors import (
    ApiError,
    BadRequest,
    CheckpointError,
    ClientStateError,
    ConfigurationError,
    DecodeError,
    Forbidden,
    InvalidJobId,
    JobFailedError,
    JobPollError,
    JobStalled,
    NotAcceptable,
    NotFound,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
    WaitTimeout,
)
from jobpoll._fanout import JobsWait, wait_for_jobs
from jobpoll._models import Job, JobResult, JobStatus
from jobpoll._policy import PollPolicy
from jobpoll._version import __version__
from jobpoll._wait import JobWait, wait_for_job

__all__ = [
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
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "TransportError",
    "Unauthorized",
    "WaitTimeout",
    "__version__",
    "wait_for_job",
    "wait_for_jobs",
]

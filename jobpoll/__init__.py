"""jobpoll: wait on CDQ Bankaccount Data API jobs from asyncio code.

The public API is what `__all__` lists; everything in a module whose name starts with an
underscore is private.
"""

from jobpoll._client import API_KEY_ENV, DEFAULT_BASE_URL, JobsClient
from jobpoll._errors import (
    ApiError,
    BadRequest,
    ConfigurationError,
    DecodeError,
    Forbidden,
    InvalidJobId,
    JobPollError,
    NotAcceptable,
    NotFound,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
    Unauthorized,
)
from jobpoll._models import Job, JobStatus
from jobpoll._version import __version__

__all__ = [
    "API_KEY_ENV",
    "DEFAULT_BASE_URL",
    "ApiError",
    "BadRequest",
    "ConfigurationError",
    "DecodeError",
    "Forbidden",
    "InvalidJobId",
    "Job",
    "JobPollError",
    "JobStatus",
    "JobsClient",
    "NotAcceptable",
    "NotFound",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "TransportError",
    "Unauthorized",
    "__version__",
]

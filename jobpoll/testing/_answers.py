"""The fake service's answers other than a job: the service's documented error body, and what
each fault answers instead of the job."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from email.utils import format_datetime

from aiohttp import web

from jobpoll._wire import format_timestamp
from jobpoll.testing._faults import Body, Drop, Fault, HttpError, Redirect


def error_response(request: web.Request, status: int, message: str) -> web.Response:
    """The service's documented error body, quirk included: it says 400 whatever the status."""
    body = {
        "id": str(uuid.uuid4()),
        "path": request.path,
        "timestamp": format_timestamp(datetime.now(UTC).replace(microsecond=0)),
        "message": message,
        "error": "BAD_REQUEST",
        "status": 400,
    }
    return web.json_response(body, status=status)


async def fault_response(request: web.Request, fault: Fault) -> web.StreamResponse:
    """The answer of a fault that replaces the job's (an `HttpError`, a `Body`, a `Redirect` or
    a `Drop`; the others change the job's own answer)."""
    if isinstance(fault, HttpError):
        return _http_error(request, fault)
    if isinstance(fault, Body):
        return _raw_body(fault)
    if isinstance(fault, Redirect):
        return web.Response(status=fault.status, headers={"Location": fault.location})
    assert isinstance(fault, Drop)
    return await _drop(request, mid_body=fault.mid_body)


def _http_error(request: web.Request, fault: HttpError) -> web.Response:
    response = error_response(request, fault.status, fault.message)
    if isinstance(fault.retry_after, str):
        response.headers["Retry-After"] = fault.retry_after
    elif fault.retry_after is not None and fault.as_date:
        now = datetime.now(UTC).replace(microsecond=0)
        response.headers["Date"] = format_datetime(now, usegmt=True)
        later = datetime.fromtimestamp(now.timestamp() + fault.retry_after, UTC)
        response.headers["Retry-After"] = format_datetime(later, usegmt=True)
    elif fault.retry_after is not None:
        response.headers["Retry-After"] = f"{fault.retry_after:g}"
    response.headers.update(fault.headers)
    return response


def _raw_body(fault: Body) -> web.Response:
    content = fault.content.encode() if isinstance(fault.content, str) else fault.content
    response = web.Response(body=content, status=fault.status)
    if fault.content_type is None:
        response.headers.popall("Content-Type", None)
    else:
        response.headers["Content-Type"] = fault.content_type
    response.headers.update(fault.headers)
    return response


async def _drop(request: web.Request, *, mid_body: bool) -> web.StreamResponse:
    transport = request.transport
    if mid_body and transport is not None:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = 1000
        await response.prepare(request)
        await response.write(b'{"id": "')
    if transport is not None:
        transport.close()
    # The connection is gone; this only ends the handler.
    raise asyncio.CancelledError

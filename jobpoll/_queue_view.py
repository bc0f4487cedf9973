"""`jobpoll queue`: a SAQ queue's waits for an operator (`SaqWaits.overview()`), as a table or
one JSON object. Needs the `saq` extra besides the `cli` one."""

from __future__ import annotations

from redis.asyncio import Redis
from rich.table import Table
from rich.text import Text
from saq.queue.redis import RedisQueue

from jobpoll._errors import QueueError
from jobpoll._exits import EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, Failure
from jobpoll._output import Output, interactive, make_console, plain
from jobpoll._saq import SaqWaits
from jobpoll._saq_overview import QueueOverview
from jobpoll._view import clock_text

#: Seconds to connect to Redis, and to wait for any one answer of it.
CONNECT_TIMEOUT, ANSWER_TIMEOUT = 10.0, 60.0


async def show_queue(redis_url: str, name: str, out: Output, *, as_json: bool) -> int:
    """Read the queue's overview once and show it; a `Failure` for a URL that is no Redis
    one (status 2) or a Redis that cannot be read (status 4), never naming the URL (it may
    carry a password)."""
    try:
        redis = Redis.from_url(
            redis_url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=ANSWER_TIMEOUT
        )
    except ValueError:
        raise Failure(
            "REDIS_URL must be a redis://, rediss:// or unix:// URL", EXIT_USAGE
        ) from None
    queue = RedisQueue(redis, name=name)
    try:
        overview = await SaqWaits(queue, on_outcome=None).overview()
    except QueueError as exc:  # its message holds no password
        raise Failure(f"cannot read the queue from Redis: {exc}", EXIT_UNREACHABLE) from None
    finally:  # not `queue.disconnect()`: it would connect to leave SAQ's channels
        await redis.aclose()
    if as_json:
        out.write_json(overview.to_dict())
    else:
        _overview_table(overview, out)
    return EXIT_OK


def _overview_table(overview: QueueOverview, out: Output) -> None:
    terminal = interactive(out)
    console = make_console(out, terminal=terminal, width=None if terminal else 200)
    table = Table(box=None, pad_edge=False, show_header=False, title_justify="left")
    table.title = plain(f"Queue {overview.queue}", "bold")
    table.add_column("what", no_wrap=True)
    table.add_column("count", no_wrap=True, justify="right")
    table.add_column("meaning", style="dim")
    for label, value, meaning in _rows(overview):
        table.add_row(plain(label), value, plain(meaning))
    console.print(table)


def _rows(overview: QueueOverview) -> list[tuple[str, Text, str]]:
    stuck = plain(f"{overview.stuck:,}", "red" if overview.stuck else "")
    lost = plain(f"{overview.lost:,}", "red" if overview.lost else "")
    undelivered = plain(f"{overview.undelivered:,}", "yellow" if overview.undelivered else "")
    rate = "unlimited" if overview.rate is None else f"{_number(overview.rate)} polls/s"
    return [
        ("waits live", plain(f"{overview.live:,}", "bold"), "not over yet"),
        ("  due", plain(f"{overview.due:,}"), "their poll is due: waiting for a worker"),
        ("  scheduled", plain(f"{overview.scheduled:,}"), "their next poll is later"),
        ("  in flight", plain(f"{overview.in_flight:,}"), "a worker is polling them"),
        ("  stuck", stuck, "their worker is gone; another worker takes them over"),
        ("  lost", lost, "in no SAQ queue; the workers' mending enqueues them again"),
        ("outcomes delivered", plain(f"{overview.delivered:,}"), "on_outcome returned"),
        ("  undelivered", undelivered, "on_outcome has not returned (yet)"),
        ("oldest wait", plain(_age(overview.oldest)), "since it was submitted"),
        ("fleet rate", plain(rate), "learned from the service's refusals"),
        ("  held", plain(_age(overview.rate_held_for or None)), "by a Retry-After, for"),
        ("  lined up", plain(_age(overview.lined_up_for or None)), "polls waiting for a turn"),
    ]


def _number(value: float) -> str:
    """Three significant digits, never in exponent form."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else clock_text(seconds)

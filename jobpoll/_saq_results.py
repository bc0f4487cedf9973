"""`outcomes_of`: the outcomes of a SAQ queue's waits, as each is over, for the process that
awaits them (`SaqWaits.results`), whichever worker ended them."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from jobpoll._models import JobResult
from jobpoll._saq_links import Links
from jobpoll._saq_redis import RedisGuard


async def outcomes_of(
    links: Links, guard: RedisGuard, pending: set[str]
) -> AsyncGenerator[JobResult, None]:
    """The outcome of each of the `pending` jobs as each is over: told on the queue's channel,
    and looked up at first and after each 2 s without news (a message may have been missed),
    with whether Redis still has their waits (`RedisGuard.gone`). Redis's errors as jobpoll's.
    """
    with guard.mapped():
        since = await guard.since()
        async with links.redis.pubsub() as pubsub:
            await pubsub.subscribe(links.channel)
            looking_at: list[str] | None = None
            while pending:
                if looking_at is None:
                    records = {job_id: links.wait_key(job_id) for job_id in pending}
                    since = await guard.gone(since, records)
                    looking_at = sorted(pending)
                ended, held = await links.stored(looking_at)
                for job_id, result in ended.items():
                    pending.discard(job_id)
                    yield result
                if held is not None:
                    raise held
                if not pending:
                    break
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
                if message is None:
                    looking_at = None
                else:
                    data = message["data"]
                    job_id = data.decode() if isinstance(data, bytes) else str(data)
                    looking_at = [job_id] if job_id in pending else []

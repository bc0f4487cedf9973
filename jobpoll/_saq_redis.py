"""`RedisGuard`: what jobpoll asks of the Redis under a SAQ queue before trusting it with
waits, and what it says when Redis fails them.

- **Durable.** A worker at its start and `submit()` at its first call read Redis's settings
  (`INFO memory`, `INFO persistence`, `CONFIG GET save`) and refuse, with a `QueueNotDurable`
  naming the setting to change, a Redis that would lose waits (`durability_refusal` decides).
- **The same data.** `jobpoll:<queue name>:epoch` is written at first use (a random token, if
  missing); a process that saw one and later finds it gone or another knows that Redis lost
  the queue's data: it logs that at ERROR, once, and a call awaiting a job whose wait's record
  the loss took raises `QueueDataLost` instead of waiting for a wait that no longer exists (a
  job submitted since is waited for). A process started after the loss cannot know it: to it,
  the new epoch is the queue's.
- **Errors as jobpoll's.** A Redis error becomes a `QueueUnavailable` chained to it, its
  message without the connection's password or user name (`mapped`).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, Literal, get_args

import attrs
from redis.asyncio import Redis
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    OutOfMemoryError,
    RedisError,
    ResponseError,
    TimeoutError,
)

from jobpoll._errors import QueueDataLost, QueueNotDurable, QueueUnavailable
from jobpoll._redact import Redactor

logger = logging.getLogger("jobpoll")

#: What `SaqWaits(durability=...)` accepts: "checked", Redis must show that it keeps the
#: waits; "volatile-accepted", a Redis that keeps no copy on disk is accepted (a restart loses
#: every wait, which the processes that saw it detect); "declared", what Redis does not let be
#: read is taken as declared by the user (it persists and does not evict: a managed Redis that
#: disables CONFIG). An evicting policy that can be read is refused whatever is said.
Durability = Literal["checked", "volatile-accepted", "declared"]
DURABILITIES: tuple[str, ...] = get_args(Durability)

#: Returns the queue's epoch, writing `ARGV[1]` as it when there is none.
_ADOPT = """
local epoch = redis.call('GET', KEYS[1])
if epoch then return epoch end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""


class QueueWrapper:
    """A SAQ queue as a worker uses it, what a subclass defines changed: any other attribute
    is the wrapped `queue`'s (SAQ's worker reaches its queue's methods by name)."""

    def __init__(self, queue: Any) -> None:
        self.queue = queue

    def __getattr__(self, name: str) -> Any:
        return getattr(self.queue, name)

    def __repr__(self) -> str:
        return repr(self.queue)


def outage_of(error: BaseException) -> bool:
    """Whether a Redis error is one a later try may find cured: no connection, no answer in
    time, a Redis loading its data or out of memory; not refused credentials."""
    if isinstance(error, AuthenticationError):
        return False
    return isinstance(error, ConnectionError | TimeoutError | OutOfMemoryError)


@attrs.frozen
class RedisSettings:
    """What decides whether Redis keeps the waits, each None when Redis did not let it be read
    (with `unread`, why)."""

    maxmemory_policy: str | None
    aof_enabled: bool | None
    save: str | None  # RDB snapshots' schedule; "": none
    unread: str = ""


def durability_refusal(settings: RedisSettings, durability: Durability) -> QueueNotDurable | None:
    """Why a Redis with these settings must not hold waits, or None.

    Any `maxmemory-policy` but `noeviction` is refused: Redis would drop keys when memory runs
    short, with no error to anyone. The `allkeys-*` policies drop a waiting link or its record
    (the wait then never ends, or ends twice); the `volatile-*` ones drop only keys with an
    expiry, but jobpoll's kept outcomes are such keys: one dropped early loses the outcome that
    `result()` reads, and lets its id be waited for and delivered again. No AOF and no RDB
    `save` schedule: a restart loses every wait, refused unless "volatile-accepted".
    """
    policy = settings.maxmemory_policy
    if policy is not None and policy != "noeviction":
        return QueueNotDurable(
            f"Redis evicts keys when its memory runs short (maxmemory-policy {policy}): it"
            " would drop waits silently; run CONFIG SET maxmemory-policy noeviction (and set"
            " it in redis.conf)",
            setting="maxmemory-policy",
            value=policy,
        )
    if durability == "declared":
        return None
    if policy is None:
        return _unreadable("maxmemory-policy", settings.unread)
    if settings.aof_enabled or settings.save:
        return None
    if durability == "volatile-accepted":
        return None
    if settings.save is None:
        return _unreadable("appendonly", settings.unread)
    return QueueNotDurable(
        "Redis keeps no copy of its data on disk (appendonly no, no save schedule): a restart"
        " would lose every wait; run CONFIG SET appendonly yes (and set appendonly yes in"
        ' redis.conf), or accept the loss with SaqWaits(durability="volatile-accepted")',
        setting="appendonly",
        value="no",
    )


def _unreadable(setting: str, why: str) -> QueueNotDurable:
    return QueueNotDurable(
        f"Redis does not let its {setting} be read ({why}), so jobpoll cannot check that it"
        " keeps the waits; if it persists its data and does not evict keys (a managed"
        ' Redis\'s settings), say so with SaqWaits(durability="declared")',
        setting=setting,
        value=None,
    )


class RedisGuard:
    """One `SaqWaits`' checks of its Redis: durable (checked once, when it passes), the same
    data (the epoch), and its errors as jobpoll's."""

    def __init__(self, redis: Redis, queue_name: str, epoch_key: str, durability: Durability):
        self.redis = redis
        self.queue_name = queue_name
        self.durability = durability
        self.epoch_key = epoch_key
        self.checked = False
        #: The queue's epoch as this process last saw it (None: not yet).
        self.epoch: str | None = None
        self._adopt = redis.register_script(_ADOPT)
        kwargs: dict[str, Any] = redis.connection_pool.connection_kwargs
        secrets = [str(kwargs[name]) for name in ("password", "username") if kwargs.get(name)]
        self._redactors = [Redactor(secret) for secret in secrets]

    @contextlib.contextmanager
    def mapped(self) -> Iterator[None]:
        """Redis's errors raised in the block, as `QueueUnavailable`s chained to them."""
        try:
            yield
        except RedisError as exc:
            error = QueueUnavailable(f"Redis of SAQ queue {self.queue_name!r}: {self.told(exc)}")
            error.transient = outage_of(exc)
            raise error from exc

    def told(self, error: BaseException) -> str:
        """A Redis error as a message may quote it: its class and text, with no secret."""
        text = f"{type(error).__name__}: {error}"
        for redactor in self._redactors:
            text = redactor(text)
        return text

    async def ready(self) -> None:
        """Before waits are written: Redis is durable, and its epoch known (or written)."""
        await self.ensure_durable()
        await self.current_epoch()

    async def ensure_durable(self) -> None:
        """Refuse a Redis that would lose waits (`durability_refusal`); once it passed, not
        read again."""
        if self.checked:
            return
        refusal = durability_refusal(await self._settings(), self.durability)
        if refusal is not None:
            raise refusal
        self.checked = True

    async def _settings(self) -> RedisSettings:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.info("memory")
            pipe.info("persistence")
            pipe.config_get("save")
            memory, persistence, save = await pipe.execute(raise_on_error=False)
        refused = [value for value in (memory, persistence, save) if isinstance(value, Exception)]
        for value in refused:
            if not isinstance(value, ResponseError):  # not a command refused: Redis is away
                raise value
        policy = _field(memory, "maxmemory_policy")
        aof = _field(persistence, "aof_enabled")
        return RedisSettings(
            maxmemory_policy=None if policy is None else str(policy),
            aof_enabled=None if aof is None else bool(int(aof)),
            save=None if isinstance(save, Exception) else str(save.get("save", "")),
            unread="; ".join(self.told(value) for value in refused),
        )

    async def current_epoch(self) -> str:
        """The queue's epoch (written if there is none), noting a change since the last look:
        at ERROR, once per loss."""
        fresh = uuid.uuid4().hex
        value = await self._adopt(keys=[self.epoch_key], args=[fresh])
        epoch = value.decode() if isinstance(value, bytes) else str(value)
        if self.epoch is not None and epoch != self.epoch:
            logger.error(
                "Redis lost SAQ queue %r's data (restarted without persistence, or flushed):"
                " the waits submitted before are gone and will never end; submit them again",
                self.queue_name,
            )
        self.epoch = epoch
        return epoch

    async def since(self) -> str:
        """The epoch a call begins in: the one this process saw last (a loss since then is
        the call's too), else the queue's now."""
        return self.epoch if self.epoch is not None else await self.current_epoch()

    async def gone(self, since: str, records: Mapping[str, str]) -> str:
        """The queue's epoch now, the next `since` of a call that began in epoch `since`.

        Args:
            records: the call's job ids, each with the key of its wait's record.

        Raises:
            QueueDataLost: Redis lost the queue's data since epoch `since`, and some of
                `records` are gone (those written since the loss are waited for).
        """
        epoch = await self.current_epoch()
        if epoch == since or not records:
            return epoch
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in records.values():
                pipe.exists(key)
            found = await pipe.execute()
        lost = [job_id for job_id, kept in zip(records, found, strict=True) if not kept]
        if lost:
            shown = ", ".join(repr(job_id) for job_id in lost[:3])
            more = f" and {len(lost) - 3} more" if len(lost) > 3 else ""
            raise QueueDataLost(
                f"Redis lost SAQ queue {self.queue_name!r}'s data (restarted without"
                " persistence, or flushed) since this process saw it: the waits on jobs"
                f" {shown}{more} are gone; submit them again"
            )
        return epoch


def _field(section: Any, name: str) -> Any:
    return section.get(name) if isinstance(section, dict) else None

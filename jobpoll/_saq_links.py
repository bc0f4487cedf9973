"""`Links`: the records of a SAQ queue's waits in Redis, and the Lua scripts that change them.

Under `jobpoll:<queue name>:`, besides SAQ's own records:

- `wait:<job id>`, a hash: `step`, the live link's number, while the job is waited for (and
  `since`, when it was submitted, on Redis's clock, in whole seconds; `timeout`, the wait's;
  `due`, when the live link's poll is due; `held`, a worker's setup error met at its last
  poll; `runner` and `begun`, the worker running the live link and when it began,
  `_saq_rescue`); then `result`, the outcome as JSON, kept `outcome_ttl`, with its delivery's
  state (`_saq_outcomes`).
- `saved:<job id>`, the wait's checkpoint in the links' form (`_saq_form`), while it is
  waited for (a string, not a field of `wait:<job id>`: a field that long would turn the hash
  from Redis's compact encoding into a table, which weighs more than a key of its own).
- `parked`, a sorted set: the job id of each wait whose next poll is due later, scored by
  when it is due.
- `rate` and `answers`, the rate every worker's polls share (`_saq_rate`, which tells how).
- `delivered` (outcomes delivered, counted), `over` (the channel announcing them), `suspects` and
  `mending` (`_saq_mend`), `worker:<token>`, `rescuing` and `unbegun` (`_saq_rescue`).

A wait is a SAQ job only while its poll is due: one whose next poll is later is parked, its
state in its records, and each worker moves the waits due (by Redis's clock, `TIME`) into SAQ's
queue every quarter second (`Links.release_due`), as a link of its job id and step, no more (a
SAQ job weighs more than all of a wait's own records). A link reads its state back as it begins
(`Links.begin`). Every time kept (when a poll is due, the checkpoint's) is on Redis's clock, as
each worker's `FleetRate` mirrors it, and a link has no SAQ `timeout`: SAQ's sweep, which
judges a job stuck by the sweeping worker's own clock, leaves links alone, and jobpoll bounds
a link's run itself (`poll_timeout`) and hands on those of a dead worker (`_saq_rescue`).

Each hand-over is one script that checks `step`, moves it on and keeps the next link's state
(`_saq_scripts`): a link run twice finds `step` moved on and does nothing, so a job id has one
chain and one outcome. A link of an earlier version carries its state in its SAQ arguments,
and runs from them. The `saq` extra's version range is the one the scripts are tested with.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any

import attrs
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from saq import Job as SaqJob
from saq.job import Status
from saq.queue.redis import RedisQueue

from jobpoll._errors import JobPollError
from jobpoll._models import JobResult
from jobpoll._saq_books import NO_END, SaqRecord
from jobpoll._saq_form import carried, carries
from jobpoll._saq_rate import ANSWERED, CUT, HORIZON, READ, TURN, Cut, FleetRate, Turn
from jobpoll._saq_scripts import (
    ENQUEUE,
    ID,
    KEEP,
    LIVE,
    PARK,
    QUEUED,
    STEP,
    SUBMIT,
    due_script,
    link_maker,
    live,
    saq_end,
    saq_start,
)

logger = logging.getLogger("jobpoll")

#: The name the poll step is registered under in a SAQ worker.
POLL_FUNCTION = "jobpoll.poll"

#: Seconds a link's SAQ record is kept once it ran, not 0: SAQ's sweep, taking a link for stuck
#: as a worker picks it up, aborts it and waits for its record to end before it retries it; with
#: no record left it would give up, and end the chain.
LINK_TTL = 10

# KEYS: as for `ENQUEUE`, then the queue's `delivered` count and `over` channel, the wait's
# kept checkpoint and the parked set, the link's SAQ id and SAQ's `active` (`saq_end`);
# ARGV: as for `ENQUEUE`, then the live step, the outcome, its TTL, the job id and the link's
# SAQ end (its record and TTL). The SAQ end is written whatever the step, but after the
# wait's end's first write, `HDEL`, which frees memory: a wait ends in a full Redis too
# (`_saq_scripts`).
_FINISH = """
if redis.call('HGET', KEYS[1], 'step') ~= ARGV[3] then
END
  return 0
end
redis.call('HDEL', KEYS[1], 'step', 'runner', 'begun', 'due')
redis.call('DEL', KEYS[7])
redis.call('ZREM', KEYS[8], ARGV[6])
redis.call('HSET', KEYS[1], 'result', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
if ARGV[1] == '' then  -- no function to deliver it to: delivered once kept
  redis.call('HSET', KEYS[1], 'delivered', 1)
  redis.call('INCR', KEYS[5])
end
redis.call('PUBLISH', KEYS[6], ARGV[6])
END
""".replace("END", saq_end("KEYS[9]", "KEYS[10]", "KEYS[3]", "ARGV[7]", "ARGV[8]"))

# Writes the link's SAQ start (ARGV[9], '': none; KEYS[5] its SAQ id, `_saq_books`), then
# takes the poll's turn (`_saq_rate.TURN`) if its link is live (else 0), noting its runner
# (ARGV[7]) and when it began; its reply ends with the state the link runs from (`Kept`),
# KEYS[4] the wait's kept checkpoint. The reply is one string, a JSON array (`_reply_of`).
_BEGIN = (
    saq_start("KEYS[5]", "ARGV[9]")
    + live("ARGV[1]")
    + """
local record = redis.call('HMGET', KEYS[1], 'due', 'timeout')
redis.call('HSET', KEYS[1], 'runner', ARGV[7], 'begun', redis.call('TIME')[1])
local kept = {redis.call('GET', KEYS[4]) or '', record[1] or '', record[2] or ''}
local reply = (function()
TURN
end)()
for _, value in ipairs(kept) do table.insert(reply, value) end
return cjson.encode(reply)
"""
)

_HOLD = (
    live("ARGV[1]")
    + """
redis.call('HSET', KEYS[1], 'held', ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
"""
)


def result_to_json(result: JobResult, *, polls: int | None = None) -> dict[str, Any]:
    """A `JobResult` as the JSON object the outcome function is enqueued with: what
    `JobResult.to_dict()` writes (`jobId`, `job` in the service's JSON, `error` as its `type`,
    `message` and `attributes`), plus `ok` and the number of `polls` the wait made."""
    return {**result.to_dict(), "ok": result.ok, "polls": polls}


def load_result(data: dict[str, Any]) -> JobResult:
    """The `JobResult` an outcome function was enqueued with (see `result_to_json`); its
    `error` is an instance of the same class, with the same message and attributes."""
    return JobResult.from_dict({key: data[key] for key in ("jobId", "job", "error")})


def _link_key(job_id: str, step: int | str) -> str:
    return f"jobpoll:{job_id}:{step}"


def _number(value: str | bytes | None) -> float | None:
    """A number a record keeps; None for none (or what does not read as one)."""
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _reply_of(raw: bytes) -> list[Any]:
    """A script's reply that it encoded as one JSON array (`cjson.encode`): redis-py's parser
    reads a reply of many values one by one, at about 10 µs of a worker's CPU each, where
    `json.loads` reads the one string at once. (Bytes that are no UTF-8, of a garbled
    checkpoint, are kept as they were, escaped as lone surrogates: `Kept.read` refuses them.)"""
    reply: list[Any] = json.loads(raw.decode(errors="surrogateescape"))
    return reply


@attrs.frozen
class Kept:
    """The state a link runs from, as its wait's records keep it: the checkpoint in the links'
    form (`_saq_form`; None: a wait not begun; what does not read as JSON, as it is, for
    `resume_job` to refuse), when its poll was due (None: at once; earlier by the time the wait
    lost, `lost_time`) and the wait's `timeout` as submitted."""

    checkpoint: Any
    due: float | None
    timeout: float | None

    @classmethod
    def read(
        cls, saved: str | bytes | None, due: str | bytes | None, timeout: str | bytes | None
    ) -> Kept:
        checkpoint: Any = None
        if isinstance(saved, str):  # of a script's JSON reply: the bytes Redis keeps
            saved = saved.encode(errors="surrogateescape")
        if saved:
            try:
                checkpoint = json.loads(saved)
            except ValueError:  # bytes that are no UTF-8 too
                checkpoint = saved.decode(errors="replace")
        return cls(checkpoint, _number(due), _number(timeout))

    @classmethod
    def carried_by(cls, arguments: dict[str, Any] | None, kept: bool) -> Kept | None:
        """The state a link of an earlier version carries in its SAQ `arguments` (None: a
        link of this version, which carries none, or one that carries no checkpoint while its
        wait's records keep one, `kept`: an earlier version's `mend` enqueued it so, not
        seeing the parked wait; it runs from the records, not as a wait not begun)."""
        if not arguments or not carries(arguments):
            return None
        if kept and carried(arguments) is None:
            return None
        return cls(carried(arguments), arguments.get("due"), arguments.get("timeout"))

    def arguments(self) -> list[str]:
        """As the scripts' `KEEP` takes it (`_saq_scripts`)."""
        checkpoint = self.checkpoint
        return [
            "" if checkpoint is None else json.dumps(checkpoint, separators=(",", ":")),
            "" if self.due is None else repr(self.due),
            "" if self.timeout is None else repr(self.timeout),
        ]


#: The arguments of `KEEP` that leave the kept state as it is.
AS_KEPT = ["-", "", ""]

#: Keys read from Redis at a time, in a scan of the queue's keys.
_SCANNED = 1000
#: What a glob-style pattern of Redis's (`SCAN MATCH`) reads as other than itself.
_GLOB = re.compile(r"[\\*?\[\]]")


@attrs.define(slots=False, kw_only=True)
class Links:
    """The records of one queue's waits in Redis, and the scripts that change them."""

    queue: RedisQueue
    poll_timeout: float
    outcome_ttl: float

    def __attrs_post_init__(self) -> None:
        self.redis = redis = self.queue.redis
        self.prefix = f"jobpoll:{self.queue.name}:"
        self.rate_keys = [self.prefix + "rate", self.prefix + "answers"]
        #: The waits due later, scored by when (Redis's clock): they have no SAQ job till then.
        self.parked_key = self.prefix + "parked"
        #: How many outcomes were delivered (`_saq_outcomes`).
        self.delivered_key = self.prefix + "delivered"
        #: The channel each outcome's job id (or held error's) is announced on.
        self.channel = self.prefix + "over"
        #: The Lua function that enqueues a link (`_saq_scripts.link_maker`).
        self.maker = link_maker(
            self.link(ID, STEP, queued=QUEUED), self.link_id(ID, STEP), self.wait_key("")
        )
        moving = self.maker + LIVE
        self._submit = redis.register_script(self.maker + SUBMIT + KEEP + PARK + "return 1")
        # KEYS: `wait_keys`, the link's SAQ id and SAQ's `active`, then the rate's; ARGV: as
        # the scripts that move a wait on take them, then the link's SAQ end (`saq_end`, its
        # record and TTL), `answered_at`.
        end = saq_end("KEYS[6]", "KEYS[7]", "KEYS[4]", "ARGV[8]", "ARGV[9]")
        self._advance = redis.register_script(end + ANSWERED + moving + KEEP + PARK + "return 1")
        self._finish = redis.register_script(ANSWERED + _FINISH + ENQUEUE + "return 1")
        self._begin = redis.register_script(_BEGIN.replace("TURN", TURN))
        self._read_rate = redis.register_script(READ)
        self._cut = redis.register_script(CUT)
        self._hold = redis.register_script(_HOLD)
        self._due = redis.register_script(due_script(self.maker))

    def wait_key(self, job_id: str) -> str:
        return f"{self.prefix}wait:{job_id}"

    def saved_key(self, job_id: str) -> str:
        """The key of the checkpoint the wait's next link runs from (`Kept`)."""
        return f"{self.prefix}saved:{job_id}"

    def wait_keys(self, job_id: str) -> list[str]:
        """The keys the scripts that move a wait on begin with (`_saq_scripts`)."""
        queue = self.queue
        return [
            self.wait_key(job_id),
            self.saved_key(job_id),
            self.parked_key,
            queue.namespace("incomplete"),
            queue.namespace("queued"),
        ]

    def link_id(self, job_id: str, step: int | str) -> str:
        """The SAQ id (its record's key) of link `step` of the wait on `job_id`."""
        return self.queue.job_id(_link_key(job_id, step))

    def enqueue(
        self,
        script: AsyncScript,
        job_id: str,
        job: SaqJob,
        *args: Any,
        keys: Sequence[str] = (),
        client: Pipeline | None = None,
    ) -> Awaitable[Any]:
        queue = self.queue
        saq_keys = [queue.job_id(job.key), queue.namespace("incomplete"), queue.namespace("queued")]
        return script(
            keys=[self.wait_key(job_id), *saq_keys, *keys],
            args=[queue.serialize(job) if job.function else "", -job.scheduled, *args],
            client=client,
        )

    async def release_due(self) -> int:
        """Enqueue the parked waits due by now (Redis's clock), and move the links of an
        earlier version due by now into SAQ's queue; how many (at most 1,000 of each a call)."""
        queue = self.queue
        keys = [self.parked_key, queue.namespace("incomplete"), queue.namespace("queued")]
        return int(await self._due(keys=keys))

    def saq_job(self, scheduled: float = 0.0, **fields: Any) -> SaqJob:
        """A SAQ job as `RedisQueue.enqueue` stores it; `scheduled`: its score, when it is due
        on Redis's clock (0: due now)."""
        fields.setdefault("queued", int(time.time() * 1000))  # shown by SAQ's UI only
        return SaqJob(
            queue=self.queue,
            retry_delay=1.0,
            retry_backoff=60.0,
            scheduled=math.ceil(scheduled) if scheduled > 0 else 0,
            status=Status.QUEUED,
            **fields,
        )

    def link(self, job_id: str, step: int | str, **fields: Any) -> SaqJob:
        """Link `step` of the wait, as the scripts enqueue it (`_saq_scripts.link_maker`): its
        job id and step, and `kept`, which says it runs from the state its wait's records keep
        (`Kept`): a worker of a version that carried the state in the link has no such argument,
        and refuses it (SAQ retries it, to a worker of this version)."""
        return self.saq_job(
            function=POLL_FUNCTION,
            key=_link_key(job_id, step),
            kwargs={"job_id": job_id, "step": step, "kept": 1},
            timeout=0,  # none of SAQ's: `SaqWaits.poll` bounds a run, `_saq_rescue` a death
            # A link is retried by SAQ when it fails (Redis failing under it); a link that
            # finds itself superseded does nothing, so retries are harmless.
            retries=1000,
            ttl=LINK_TTL,
            **fields,
        )

    async def submit(
        self,
        ids: list[str],
        timeout: float | None,  # noqa: ASYNC109 - the waits' deadline, not this call's
    ) -> list[bool]:
        """Start a wait on each id not waited for already; per id, whether one started."""
        state = Kept(None, None, timeout).arguments()
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                args = [job_id, "", "0", *state, "0"]
                await self._submit(keys=self.wait_keys(job_id), args=args, client=pipe)
            started = await pipe.execute()
        return [bool(flag) for flag in started]

    async def hand_over(
        self,
        job_id: str,
        step: int,
        checkpoint: Any,
        due: float,
        now: float,
        timeout: float | None = None,  # noqa: ASYNC109 - the wait's deadline
        *,
        answered_at: float | None = None,
        lost: float = 0.0,
        end: SaqRecord | None = None,
    ) -> None:
        """Hand the wait over to the link after `step`, if `step` is live: its `checkpoint`
        kept, parked until `due` (or its link enqueued at once, due by `now`; both epoch
        seconds on Redis's clock). `answered_at`: when the link's poll was accepted, on Redis's
        clock, for the shared rate to count (None: it was not). `lost`: seconds the wait lost
        that `checkpoint`'s deadline does not leave out yet: the next link counts itself as
        late (its `due` earlier) by as much. `end`: the link's SAQ end, written whatever the
        step (`_saq_books`)."""
        state = Kept(checkpoint, due - lost, timeout).arguments()
        scheduled = repr(due) if due > now else "0"
        answered = "" if answered_at is None else repr(answered_at)
        ending, ended = self._ending(job_id, step, end)
        args: list[str | int] = [job_id, step, step + 1, *state, scheduled, *ended, answered]
        keys = [*self.wait_keys(job_id), *ending, *self.rate_keys]
        await self._advance(keys=keys, args=args)

    def _ending(
        self, job_id: str, step: int, end: SaqRecord | None
    ) -> tuple[list[str], list[str | int]]:
        """The keys and arguments of `saq_end` but SAQ's `incomplete`: the link's SAQ id and
        SAQ's `active`; its end's record and TTL."""
        active = self.queue.namespace("active")
        if end is None:
            return [self.link_id(job_id, step), active], NO_END
        return [end.saq_id, active], end.arguments()

    async def deliver(
        self,
        data: dict[str, Any],
        outcome: SaqJob,
        step: int,
        *,
        answered_at: float | None,
        end: SaqRecord | None = None,
    ) -> bool:
        """End the wait with its outcome (`result_to_json`), if `step` is live, and enqueue
        `outcome`, its SAQ job; whether it ended. `answered_at` and `end` as for `hand_over`."""
        job_id = str(data["jobId"])
        ending, ended = self._ending(job_id, step, end)
        over = await self.enqueue(
            self._finish,
            job_id,
            outcome,
            step,
            json.dumps(data),
            math.ceil(self.outcome_ttl),
            job_id,
            *ended,
            "" if answered_at is None else repr(answered_at),
            keys=[
                self.delivered_key,
                self.channel,
                self.saved_key(job_id),
                self.parked_key,
                *ending,
                *self.rate_keys,
            ],
        )
        return bool(over)

    async def held(self, job_id: str, step: int, error: JobPollError) -> None:
        """Keep and announce the setup error this link met, for `results()` to raise."""
        held = {**result_to_json(JobResult(job_id, None, error)), "step": step}
        await self._hold(
            keys=[self.wait_key(job_id), self.channel], args=[step, json.dumps(held), job_id]
        )

    async def stored(self, job_ids: list[str]) -> tuple[dict[str, JobResult], JobPollError | None]:
        """The kept outcomes of `job_ids`, and a setup error met at the last poll of one of the
        others: one kept at a step not followed by a poll since (the step after it is live)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(self.wait_key(job_id), ["result", "step", "held"])
            values = await pipe.execute()
        ended: dict[str, JobResult] = {}
        held: JobPollError | None = None
        for job_id, (result, step, held_json) in zip(job_ids, values, strict=True):
            if result is not None:
                ended[job_id] = load_result(json.loads(result))
            elif held_json is not None and step is not None:
                data = json.loads(held_json)
                if int(step) <= data["step"] + 1:
                    held = load_result(data).error
                    assert held is not None
                    held.add_note(f"met by a worker polling job {job_id}; its wait goes on")
        return ended, held

    async def begin(
        self,
        job_id: str,
        step: int,
        rate: FleetRate,
        longest: float,
        runner: str,
        start: SaqRecord | None = None,
    ) -> tuple[Turn, Kept] | None:
        """The turn of link `step` of the job's wait (`_saq_rate.TURN`; a place in line at
        most `longest` seconds away) and the state it runs from, or None: the link is not live.
        The wait's record notes that worker `runner` runs it. `start`: the link's SAQ start,
        written first, whatever the step (`_saq_books`)."""
        link = self.link_id(job_id, step) if start is None else start.saq_id
        keys = [self.wait_key(job_id), *self.rate_keys, self.saved_key(job_id), link]
        record = "" if start is None else start.record
        for cuts in (str(rate.control.cuts), ""):  # the second time: whatever cut came between
            spacing = repr(rate.spacing())
            args: list[str | int] = [step, spacing, rate.seen, repr(longest), repr(HORIZON)]
            args += [cuts, runner, repr(rate.line_spacing()), record]
            record = ""  # written once
            raw = await self._begin(keys=keys, args=args)
            if raw == 0:
                return None
            reply = _reply_of(raw)
            turn = rate.turn(reply)
            if turn is not None:
                return turn, Kept.read(*reply[-3:])
        raise AssertionError("a turn asked for any cuts is taken")  # pragma: no cover

    async def read_rate(self, rate: FleetRate) -> None:
        """Bring `rate`'s mirror of the shared rate up to date."""
        rate.mirror(await self._read_rate(keys=self.rate_keys, args=[rate.seen]))

    async def cut_rate(self, cut: Cut) -> bool:
        """Write a refusal's cut (or hold) to the shared rate; whether it cut."""
        return bool(await self._cut(keys=self.rate_keys, args=cut.arguments()))

    def waits(self) -> AsyncIterator[list[str]]:
        """The job id of every wait's record, waiting or ended, a batch at a time."""
        return self.ids_under(self.wait_key(""))

    async def ids_under(self, prefix: str) -> AsyncIterator[list[str]]:
        """What follows `prefix` in each key that starts with it, a batch at a time (a `SCAN`:
        no stall of Redis however many keys). The prefix holds the queue's name, which may
        hold `*`, `?`, `[` or `\\`: they are escaped, so that the pattern matches the prefix
        itself and no other queue's keys."""
        match = _GLOB.sub(r"\\\g<0>", prefix) + "*"
        cursor = 0
        while True:
            cursor, keys = await self.redis.scan(cursor, match=match, count=_SCANNED)
            yield [key.decode().removeprefix(prefix) for key in keys]
            if cursor == 0:
                return

    async def places(self, live: list[tuple[str, str]]) -> list[tuple[float | None, float | None]]:
        """For each live wait (job id, step): its link's score in SAQ's `incomplete` set, and
        its score in the parked set (None: not there). A wait in neither is lost."""
        incomplete = self.queue.namespace("incomplete")
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id, step in live:
                pipe.zscore(incomplete, self.link_id(job_id, step))
                pipe.zscore(self.parked_key, job_id)
            scores: list[float | None] = await pipe.execute()
        return list(zip(scores[::2], scores[1::2], strict=True))

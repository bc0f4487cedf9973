"""The Lua scripts that change a SAQ queue's waits in Redis (`_saq_links.Links` runs them), made
of shared fragments, and the SAQ job of a link as a script writes it (`link_maker`).

The scripts that move a wait on (`Links.submit`, `hand_over` and `mend`, `_saq_rescue`'s
hand-on) share one layout of their first keys and arguments:

- KEYS: the wait's record, its kept checkpoint, the queue's parked set, SAQ's `incomplete` set
  and `queued` list (`Links.wait_keys`), then the script's own (the shared rate's two last,
  for `ANSWERED`);
- ARGV: the job id, the live link's step, the next link's, then the state the next link takes
  (`KEEP`): its checkpoint in the links' form ('': none, a wait not begun; '-': the one kept,
  left as it is), when its poll is due ('': at once) and the wait's `timeout` ('': none given),
  then when it runs (`PARK`: 0, at once), then the script's own.

Each script is all or nothing when Redis is out of memory: Redis refuses a command that may
grow memory (`SET`, `SETEX`, `HSET`, `LPUSH`, `RPUSH`, `ZADD`) only as a script's first write,
before it changed anything, and lets a script that wrote run to its end. So a script whose
first write is such a command is refused whole: a hand-over's (its link's SAQ end, `saq_end`,
run by a worker; else `ANSWERED`'s `LPUSH` when its poll was accepted, else `KEEP`'s `HSET`),
a link's begin (its SAQ start, `saq_start`, else its `HSET`), `SUBMIT`'s (`HSET`), `mend`'s
(`KEEP`'s `HSET`) and `DUE`'s (its first `ZADD` or `SET`); and one whose first write only
frees memory runs whole: `_saq_rescue`'s hand-on (`LREM`), and a wait's end (`HDEL`, unless
`ANSWERED` comes first; its link's SAQ end after it). A script refused changes nothing, and
is tried again (a hand-over or a begin by SAQ's retry of its link, `DUE` by the next tick);
one let through grows Redis a little past its `maxmemory`.
"""

from __future__ import annotations

import json
import re

from saq import Job as SaqJob

from jobpoll._errors import ConfigurationError

# Ends the scripts that enqueue a SAQ job (`Links.enqueue`): KEYS[1:4] are the wait's record,
# the job's key, SAQ's `incomplete` set and `queued` list; ARGV[1:2] the job ('' for a job
# with no function: no `on_outcome`) and its score (0: due now).
ENQUEUE = """
if ARGV[1] ~= '' then
  redis.call('SET', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[2], KEYS[2])
  if ARGV[2] == '0' then redis.call('RPUSH', KEYS[4], KEYS[2]) end
end
"""


def saq_start(job: str, record: str) -> str:
    """Writes a job's SAQ start as SAQ's `Queue.update` does (`_saq_books`), unless its record,
    the Lua expression `record`, is '': its record, its status announced (`job` its SAQ id)."""
    return f"""
if {record} ~= '' then
  redis.call('SET', {job}, {record})
  redis.call('PUBLISH', {job}, 'active')
end
"""


def saq_end(job: str, active: str, incomplete: str, record: str, ttl: str) -> str:
    """Writes a job's SAQ end as SAQ's `Queue.finish` does (`_saq_books`), unless its record,
    the Lua expression `record`, is '': out of SAQ's `active` and `incomplete`, its record kept
    `ttl` seconds (0: for good), its status announced (`job` its SAQ id). First in a script,
    its write is the script's first: refused whole by a full Redis, as SAQ's own would be
    (after a write that frees memory, a wait's end's, it is let through: see above)."""
    return f"""
if {record} ~= '' then
  local ttl = tonumber({ttl})
  if ttl > 0 then redis.call('SETEX', {job}, ttl, {record})
  else redis.call('SET', {job}, {record}) end
  redis.call('LREM', {active}, 1, {job})
  redis.call('ZREM', {incomplete}, {job})
  redis.call('PUBLISH', {job}, 'complete')
end
"""


def live(step: str) -> str:
    """The check each script that acts for a link makes first: it returns 0 unless the wait's
    live link (`step` in its record, KEYS[1]) is `step`, a Lua expression (an argument)."""
    return f"if redis.call('HGET', KEYS[1], 'step') ~= {step} then return 0 end\n"


#: Returns 0 unless the wait's live link is ARGV[2] (the layout of the scripts that move a
#: wait on).
LIVE = live("ARGV[2]")

#: Moves the wait's live link on to ARGV[3] (or, the same step, leaves it), with the state
#: it runs from (ARGV[4:6]), and clears the noting of the link's runner (`_saq_rescue`).
KEEP = """
local fields = {'step', ARGV[3]}
local gone = {'runner', 'begun'}
if ARGV[4] ~= '-' then
  if ARGV[5] == '' then table.insert(gone, 'due')
  else table.insert(fields, 'due') table.insert(fields, ARGV[5]) end
  if ARGV[6] ~= '' then table.insert(fields, 'timeout') table.insert(fields, ARGV[6]) end
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('HDEL', KEYS[1], unpack(gone))
if ARGV[4] == '' then redis.call('DEL', KEYS[2])
elseif ARGV[4] ~= '-' then redis.call('SET', KEYS[2], ARGV[4]) end
"""

#: Parks the wait until ARGV[7] (Redis's clock), or (0) enqueues its next link at once.
PARK = """
if ARGV[7] == '0' then
  redis.call('ZREM', KEYS[3], ARGV[1])
  release(ARGV[1], ARGV[3], KEYS[4], KEYS[5], redis.call('TIME'))
else
  redis.call('ZADD', KEYS[3], ARGV[7], ARGV[1])
end
"""

#: Starts a wait (returns 0: one is kept already), with when it was submitted.
SUBMIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'since', redis.call('TIME')[1])
"""

#: Enqueues the live link again (the same step), unless the wait is parked or its link is in
#: SAQ's `incomplete` set (KEYS[6], its SAQ id).
MEND = """
if redis.call('ZSCORE', KEYS[3], ARGV[1]) then return 0 end
if redis.call('ZSCORE', KEYS[4], KEYS[6]) then return 0 end
"""

# The parked waits due by Redis's clock, enqueued (KEYS = [parked, incomplete, queued]); and
# the links of an earlier version scheduled in `incomplete` (a link due at `t` scored `-t`,
# below the scores SAQ's scheduler reads), moved into SAQ's queue.
_DUE = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[2], string.format('%.6f', -now), '(0',
  'LIMIT', 0, 1000)
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[2], 0, id)
  redis.call('RPUSH', KEYS[3], id)
end
local parked = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now),
  'LIMIT', 0, 1000)
for _, id in ipairs(parked) do
  local step = redis.call('HGET', WAITS .. id, 'step')
  if step then release(id, step, KEYS[2], KEYS[3], time) end
end
-- The lowest of the parked set: those just read, no more (it has no LIMIT by score).
if #parked > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #parked - 1) end
return #due + #parked
"""

#: The placeholders of the link `link_maker` is given: its job id, step and time queued.
ID, STEP, QUEUED = "\x01i", "\x01s", "\x01q"
# The placeholders as the link's JSON holds them (a step or time as a number, in quotes; the
# id, and the step in the link's key, inside a string), with the Lua value put in each.
_PLACES = {
    json.dumps(STEP): "step",
    json.dumps(QUEUED): "queued_at",
    json.dumps(ID)[1:-1]: "id",
    json.dumps(STEP)[1:-1]: "step",
}
_SAFE = re.compile(rb"[A-Za-z0-9 _:,.{}\[\]-]")


def _lua_string(text: str) -> str:
    """`text` as a Lua string literal, each byte not plainly safe as a decimal escape."""
    escaped = "".join(
        chr(byte) if _SAFE.fullmatch(bytes([byte])) else f"\\{byte:03d}" for byte in text.encode()
    )
    return f'"{escaped}"'


def _concatenation(text: str, places: dict[str, str]) -> str:
    """A Lua expression: `text`, each of `places` in it replaced by its Lua value."""
    pattern = "(" + "|".join(re.escape(place) for place in places) + ")"
    pieces = re.split(pattern, text)
    return " .. ".join(
        _lua_string(piece) if number % 2 == 0 else places[piece]
        for number, piece in enumerate(pieces)
        if piece
    )


def link_maker(link: SaqJob, saq_id: str, waits: str) -> str:
    """The Lua function `release(id, step, incomplete, queued, time)`, which enqueues link
    `step` of the wait on `id` at once (queued at `time`, a reply of Redis's `TIME`) as
    `RedisQueue.enqueue` stores a job (its record, its entry in `incomplete` scored 0, its SAQ
    id in `queued`), unless, as there, it is in `incomplete` already (an earlier version's
    `mend` enqueues a parked wait's live link); and `WAITS`, the prefix of the waits' records
    (`waits`).

    `link`: a link as `Links.link` makes it, of a wait on `ID` at step `STEP` queued at
    `QUEUED`, `saq_id` its SAQ id: the function writes its JSON with the id, the step and the
    time (Redis's, in milliseconds) put in. The queue must write its jobs as JSON (SAQ's
    default), else `ConfigurationError`."""
    serialized = link.get_queue().serialize(link)
    try:
        text = serialized.decode() if isinstance(serialized, bytes) else serialized
    except UnicodeDecodeError:
        text = ""  # not JSON
    found = sorted(_PLACES[piece] for piece in re.findall("|".join(map(re.escape, _PLACES)), text))
    if found != ["id", "id", "queued_at", "step", "step"]:
        raise ConfigurationError(
            "the SAQ queue of jobpoll's waits must write its jobs as JSON: make it with SAQ's "
            "default dump and load"
        )
    return f"""
local WAITS = {_lua_string(waits)}
local function release(raw, step, incomplete, queued, time)
  local id = string.sub(cjson.encode(raw), 2, -2)
  local queued_at = string.format('%d', tonumber(time[1]) * 1000 + math.floor(time[2] / 1000))
  local job = {_concatenation(saq_id, {ID: "raw", STEP: "step"})}
  if redis.call('ZSCORE', incomplete, job) then return end  -- queued already, as SAQ's enqueue
  redis.call('SET', job, {_concatenation(text, _PLACES)})
  redis.call('ZADD', incomplete, 0, job)
  redis.call('RPUSH', queued, job)
end
"""


def due_script(maker: str) -> str:
    """`DUE`, with the queue's link maker (`link_maker`)."""
    return maker + _DUE

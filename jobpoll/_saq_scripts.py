"""The Lua scripts of `jobpoll.saq`: each checks a wait's record in Redis and writes SAQ's
own records in the same atomic step (see `_saq` for what Redis holds)."""

from __future__ import annotations

__all__ = [
    "ADVANCE",
    "BEGIN",
    "CALM",
    "DELIVERED",
    "FINISH",
    "HOLD",
    "MEND",
    "SUBMIT",
    "THROTTLE",
]

# Each script checks the wait's record and writes SAQ's job in the same atomic step.
# KEYS: the wait's record, the SAQ job's key, SAQ's `incomplete` set, SAQ's `queued` list.
# An empty job (ARGV[1]) enqueues nothing: an outcome kept for `result()` only.
_ENQUEUE_SAQ_JOB = """
if ARGV[1] ~= '' then
  redis.call('SET', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[2], KEYS[2])
  if ARGV[2] == '0' then redis.call('RPUSH', KEYS[4], KEYS[2]) end
end
"""

# ARGV: the first link's SAQ job, its score (0: due now), the wait's timeout ('' for none).
SUBMIT = (
    """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'step', 0)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'timeout', ARGV[3]) end
"""
    + _ENQUEUE_SAQ_JOB
    + "return 1"
)

# ARGV: the next link's SAQ job, its score, the live step, the next step.
ADVANCE = (
    """
if redis.call('HGET', KEYS[1], 'step') ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[1], 'step', ARGV[4])
"""
    + _ENQUEUE_SAQ_JOB
    + "return 1"
)

# ARGV: the outcome's SAQ job, '0', the live step, the result's JSON, its TTL in seconds.
# KEYS[5]: the counter of outcomes delivered. KEYS[6]: the channel outcomes are announced on.
FINISH = (
    """
if redis.call('HGET', KEYS[1], 'step') ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], 'step')
redis.call('HSET', KEYS[1], 'result', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('INCR', KEYS[5])
"""
    + _ENQUEUE_SAQ_JOB
    + """
redis.call('PUBLISH', KEYS[6], ARGV[6])
return 1
"""
)

# ARGV: the link's SAQ job, '0', the live step. Enqueues the live link again, if it is still
# live and still missing from SAQ's `incomplete` set.
MEND = (
    """
if redis.call('HGET', KEYS[1], 'step') ~= ARGV[3] then return 0 end
if redis.call('ZSCORE', KEYS[3], KEYS[2]) then return 0 end
"""
    + _ENQUEUE_SAQ_JOB
    + "return 1"
)

# KEYS: the wait's record, the fleet's pause. ARGV: the step. Whether that step is live, and
# the pause's fields.
BEGIN = """
local live = redis.call('HGET', KEYS[1], 'step') == ARGV[1] and 1 or 0
local pause = redis.call('HMGET', KEYS[2], 'until', 'gen', 'streak')
return {live, pause[1] or '0', pause[2] or '0', pause[3] or '0'}
"""

# KEYS: the fleet's pause. ARGV: the generation the poll was sent in, until (epoch seconds).
# Only a poll sent since the last pause began starts a new one: the rest of a storm's answers
# were sent before it, and say nothing new.
THROTTLE = """
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
if gen ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'until', ARGV[2], 'gen', gen + 1)
redis.call('HINCRBY', KEYS[1], 'streak', 1)
return 1
"""

# KEYS: the wait's record, the channel outcomes are announced on. ARGV: the live step, the
# setup error met (a result's JSON, with that step), the job id. Kept in the record and
# announced as an outcome is, so that `results()` raises it at once.
HOLD = """
if redis.call('HGET', KEYS[1], 'step') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'held', ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
"""

# KEYS: the wait's record. Once the outcome function returned; nothing if the record expired.
DELIVERED = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'delivered', 1) end
"""

# KEYS: the fleet's pause. ARGV: the generation the answered poll was sent in.
CALM = """
if redis.call('HGET', KEYS[1], 'gen') == ARGV[1] then redis.call('HSET', KEYS[1], 'streak', 0) end
"""

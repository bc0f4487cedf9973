"""`FleetRate`: one rate for every worker of a SAQ queue, kept in Redis, so that any number of
workers together keep under the service's limit as one client does.

The rules are `RateControl`'s, unchanged: each worker applies them to a mirror of the queue's
shared state, which Redis keeps and changes only where it must be atomic. Under
`jobpoll:<queue name>:`, on Redis's own clock (`TIME`: a worker whose clock is off changes
nothing):

- `rate`, a hash: the fleet's `RateState` (`rate`, `peak`, `cut_at`), `cuts` (the cuts so
  far), `hold_until` (a `Retry-After` holds the rate until then), `last` (the last turn taken),
  `later` (the last place given in the line of polls handed over for want of a turn soon),
  `answered` (accepted answers counted, since `started` once it is set), and `started` and
  `sent` (the fleet's slow start: when its first poll was sent, and the polls sent since,
  `SLOW_START_SECONDS`). No hash, or no `rate` in it: not held to any rate.
- `answers`: the times of the newest accepted answers of every worker, newest first, since
  the last cut (`KEPT` of them): what a cut measures and what growth checks.

A poll's turn is taken in the script that checks its link is live (`Links.begin`): given the
spacing (one over the rate now) the worker computed from its mirror (asked again if the
mirror missed a cut, or a wipe), it takes the next turn, `max(now, last + spacing)` (as
`RateControl.delay` spaces one client's requests), if it comes within `HORIZON`, which the
worker sleeps, reading the shared state again as it wakes (a cut meanwhile voids the turn:
`CUT`); else it takes the next place in line, one spacing after the last place given
(at most `longest` away), at the rate the rules give the end of the line (`line_spacing`),
and the link is handed over unpolled to run then: no worker sits holding a SAQ job for long,
and a rate that grows or is cut meanwhile applies when it runs. The script's reply brings
the mirror up to date, unless Redis ran it before a reply the mirror took already (a
worker's links run their scripts side by side), and counts each accepted answer once, by its
place in `answered` (`FleetRate.mirror`). A refusal of a poll sent since the last cut reads
the state afresh, cuts it by `RateControl.throttled` (a first cut with too little measured
goes by the fleet's answers since `started`, as one client's by its own) and writes it back
if no worker cut it meanwhile (`cuts` unchanged).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from jobpoll._errors import JobPollError
from jobpoll._gate import INITIAL_WINDOW, refusal_of
from jobpoll._rate import KEPT, RateControl
from jobpoll._state import RateState

#: The longest a poll waits in its worker for its turn; a later turn hands it over unpolled.
HORIZON = 1.0
#: A queue's fleet starts slow, as one client does (`_gate`): until its first refusal, for
#: `SLOW_START_SECONDS` at most from its first poll, the polls sent are at most
#: `INITIAL_WINDOW` more than twice the answers accepted (the window doubles each round
#: trip). A poll over it waits in its worker, `SLOW_START_WAIT` then twice as long each time
#: up to `HORIZON`, and asks again (a hand-over would come back at once, and spin). The time
#: bounds what polls lost in flight (a worker killed) or answered with errors could hold
#: back.
SLOW_START_SECONDS = 10.0
SLOW_START_WAIT = 0.05

_TIME = """
local function at(time) return tonumber(time[1]) + tonumber(time[2]) / 1000000 end
local function text(value) return string.format('%.6f', value) end
"""

# The shared state and the answers since the `seen`-th (only while a rate is held, unless
# `always`: none are needed before; the count is then '', none read): KEYS[r], KEYS[r + 1]
# are the `rate` hash and the `answers` list.
_READ = (
    _TIME
    + """
local function shared(r, seen, always)
  local now = at(redis.call('TIME'))
  local state = redis.call(
    'HMGET', KEYS[r], 'rate', 'peak', 'cut_at', 'cuts', 'hold_until', 'last', 'later',
    'answered', 'started')
  local counted = ''
  local answers = {}
  if always or state[1] then
    local total = tonumber(state[8]) or 0
    local count = total - seen
    if count < 0 or count > KEPT then count = KEPT end
    if count > 0 then answers = redis.call('LRANGE', KEYS[r + 1], 0, count - 1) end
    counted = tostring(total)
  end
  return now, state, {text(now), state[1] or '', state[2] or '', state[3] or '',
    state[4] or '0', state[5] or '', counted, state[7] or '', state[9] or '', answers}
end
""".replace("KEPT", str(KEPT))
)

#: Reads the shared state: KEYS = [rate, answers], ARGV = [seen].
READ = _READ + "local _, _, reply = shared(1, tonumber(ARGV[1]), true) return reply"

#: Takes a turn, after a check that returns early: KEYS[2:3] = [rate, answers], ARGV[2:6] =
#: [spacing, seen, the longest a place in line may be away, horizon, the cuts the spacing was
#: computed after ('': any)], ARGV[8] = the spacing of the places in line. A spacing computed
#: after other cuts takes nothing (-1).
TURN = (
    _READ
    + """
local now, state, reply = shared(2, tonumber(ARGV[3]), false)
if ARGV[6] ~= '' and ARGV[6] ~= (state[4] or '0') then
  table.insert(reply, text(now))
  table.insert(reply, -1)
  return reply
end
local spacing = tonumber(ARGV[2])
if spacing == 0 and not state[1] then
  local started = tonumber(state[9] or '')
  local answered = tonumber(state[8]) or 0
  if not started then  -- the count starts with it (answers under a ceiling are none of it)
    started, answered = now, 0
    redis.call('HSET', KEYS[2], 'started', text(now))
    redis.call('HDEL', KEYS[2], 'answered')
  end
  if now - started < SLOW_START_SECONDS then
    local sent = tonumber(redis.call('HGET', KEYS[2], 'sent') or '0')
    if sent >= INITIAL_WINDOW + 2 * answered then
      table.insert(reply, text(now + SLOW_START_WAIT))
      table.insert(reply, 2)
      return reply
    end
    redis.call('HINCRBY', KEYS[2], 'sent', 1)
  end
end
local turn = math.max(now, (tonumber(state[6]) or -math.huge) + spacing)
local taken = 1
if turn - now <= tonumber(ARGV[5]) then
  if spacing > 0 then redis.call('HSET', KEYS[2], 'last', text(turn)) end
else
  taken = 0
  local place = math.max(turn, (tonumber(state[7]) or -math.huge) + tonumber(ARGV[8]))
  turn = math.min(place, now + tonumber(ARGV[4]))
  redis.call('HSET', KEYS[2], 'later', text(turn))
end
table.insert(reply, text(turn))
table.insert(reply, taken)
return reply
""".replace("SLOW_START_SECONDS", repr(SLOW_START_SECONDS))
    .replace("SLOW_START_WAIT", repr(SLOW_START_WAIT))
    .replace("INITIAL_WINDOW", str(INITIAL_WINDOW))
)

#: Cuts the shared rate unless another cut came since the refused poll was sent, and holds
#: it until `hold_until`: KEYS = [rate, answers], ARGV = [cuts the poll was sent in ('': hold
#: only), rate, peak ('': none), cut_at, hold_until ('': none)]. The next turn is one
#: spacing after the cut, as one client's next request is (`RateControl.cut`: the service's
#: bucket is empty). The turns taken before the cut and not yet reached are void: a poll
#: asleep until one reads the fleet's state before it sends, and takes a turn anew after a
#: cut. Kept, they held the fleet's next turn up to `HORIZON` away, for polls that then did
#: not send at them either: a second of nothing sent after each cut. The turns stay spaced
#: by the ceiling; a poll that read no cut just before the script leaves within the moment
#: between its read and its GET of its turn (as any poll does of its own turn).
CUT = (
    _TIME
    + """
if ARGV[5] ~= '' then
  local held = tonumber(redis.call('HGET', KEYS[1], 'hold_until') or '')
  if not held or tonumber(ARGV[5]) > held then
    redis.call('HSET', KEYS[1], 'hold_until', ARGV[5])
  end
end
if ARGV[1] == '' or (redis.call('HGET', KEYS[1], 'cuts') or '0') ~= ARGV[1] then return 0 end
local now = at(redis.call('TIME'))  -- a poll that read no cut before this is on its way
redis.call('HSET', KEYS[1], 'rate', ARGV[2], 'cut_at', ARGV[4],
  'last', text(math.max(tonumber(ARGV[4]), now)), 'cuts', tonumber(ARGV[1]) + 1)
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], 'peak')
else redis.call('HSET', KEYS[1], 'peak', ARGV[3]) end
redis.call('DEL', KEYS[2])
return 1
"""
)

#: Begins a hand-over script: with ARGV's last the time of the poll's accepted answer ('':
#: not accepted), counts it in KEYS' last two, the `rate` hash and the `answers` list (trimmed
#: to the newest `KEPT` once twice as long).
ANSWERED = """
if ARGV[#ARGV] ~= '' then
  if redis.call('LPUSH', KEYS[#KEYS], ARGV[#ARGV]) > 2 * KEPT then
    redis.call('LTRIM', KEYS[#KEYS], 0, KEPT - 1)
  end
  redis.call('HINCRBY', KEYS[#KEYS - 1], 'answered', 1)
end
""".replace("KEPT", str(KEPT))


@attrs.frozen
class Turn:
    """A poll's turn: `delay` seconds away on Redis's clock, and `taken` (the worker sleeps
    until it) or not (a place in the line: the link is handed over unpolled to run then);
    `sent_in`: the cut its poll is sent in. `again`: none yet, the fleet's slow start is full:
    ask again after `delay`."""

    delay: float
    taken: bool
    sent_in: int
    again: bool = False


@attrs.frozen
class Cut:
    """What a refusal writes to the shared state (the arguments of `CUT`)."""

    sent_in: int | None  # None: the refusal cuts nothing, it only holds the rate
    state: RateState
    hold_until: float

    def arguments(self) -> list[str]:
        state = self.state
        hold = "" if self.hold_until == -math.inf else repr(self.hold_until)
        return [
            "" if self.sent_in is None else str(self.sent_in),
            "" if state.rate is None else repr(state.rate),
            "" if state.peak is None else repr(state.peak),
            repr(state.cut_at),
            hold,
        ]


class FleetRate:
    """One worker's mirror of its queue's shared rate, with no I/O: it says what to ask Redis
    and reads what Redis answers. `clock`: the worker's monotonic clock, by which it tells the
    time on Redis's between two answers."""

    def __init__(self, max_rate: float | None, clock: Callable[[], float]) -> None:
        # A worker sees only its own answers, not the share of the fleet's that were
        # refused: it cuts on every refusal (`RateControl.weigh` needs them all).
        self.control = RateControl(max_rate, tells_noise=False)
        self.clock = clock
        self.seen = 0  # the fleet's accepted answers counted in the mirror
        self.redis_at = -math.inf  # Redis's clock at the newest reply taken...
        self.local_at = clock()  # ...and the worker's then
        self.later = -math.inf  # the last place given in the fleet's line, as last read

    def now(self) -> float:
        """The time on Redis's clock (0 before any reply)."""
        return max(self.redis_at, 0.0) + (self.clock() - self.local_at)

    def spacing(self, at: float | None = None) -> float:
        """The seconds between two turns at the rate the mirror says now, or `at` then as
        the rules would grow it (0: no rate)."""
        rate = self.control.rate_at(self.now() if at is None else at)
        return 0.0 if rate == math.inf else 1.0 / rate

    def line_spacing(self) -> float:
        """The seconds between two places in the fleet's line: the spacing at the end of the
        line, where the next place goes. Places spaced at the rate now would hold the fleet
        at today's rate for as long as the line is (its links come back one spacing apart,
        however the rate has grown): a line of a thousand at a rate just cut to one a second
        would take minutes, where the rate doubles each second. A cut meanwhile brings links
        back early; they take a place again, at the rate then."""
        return self.spacing(max(self.later, self.now()))

    def mirror(self, reply: Sequence[Any]) -> tuple[float, int]:
        """Bring the mirror up to date with a reply of `READ` (the start of one of `TURN`);
        Redis's time then, and the cuts the shared state had. A state that does not read as
        one is no state (no rate held).

        A worker's links run their scripts side by side, so their replies come back in any
        order: one that Redis ran before the newest taken (on Redis's clock) changes nothing
        (its state is older, its answers counted), unless it brings a cut the mirror has not
        seen, or is more than `HORIZON` older (no worker's replies are that far out of order:
        Redis's clock stepped back, an NTP step or a failover, and its replies are news). An
        accepted answer is counted once, by its place in the fleet's count (`answered`): of the
        newest answers a reply brings, those past `seen`. Counted twice, answers would measure
        the fleet's accepted rate as many times what it is, and a cut would set the rate far
        above the limit."""
        now, rate, peak, cut_at, cuts, hold, total, later, started, answers = (
            *(_text(field) for field in reply[:9]),
            reply[9] or [],  # none: an empty list, or the {} `cjson.encode` writes for one
        )
        at = float(now)
        state, count = _state_of(rate, peak, cut_at, cuts)
        if self.redis_at - HORIZON <= at < self.redis_at and count <= self.control.cuts:
            return at, count  # run before the newest reply taken: older, its answers counted
        self.redis_at, self.local_at = at, self.clock()
        self.later = _number(later) or -math.inf
        hold_until = _number(hold)
        control = self.control
        control.adopt(
            state,
            count,
            -math.inf if hold_until is None else hold_until,
            [
                float(at)
                for at in reversed(self.fresh(None if total == "" else int(total), answers))
            ],
        )
        # What a first cut with too little measured goes by: the fleet's accepted answers
        # since its first poll, as one client's own (`RateControl.cut`).
        control.accepted, control.started_at = self.seen, _number(started)
        return at, count

    def fresh(self, total: int | None, answers: Sequence[Any]) -> Sequence[Any]:
        """Of the newest answers (newest first) of a reply that counts `total` (None: it read
        none, no rate held), those the mirror has not counted yet. A count below `seen` is
        Redis's count started anew (its data lost, or an older copy of it back): `seen` starts
        again from it (else the fleet's first cut would take the answers counted before for
        answers since its first poll), and its answers are new but those the mirror holds
        already (an older copy's)."""
        if total is None:
            return answers
        if total < self.seen:
            held = set(self.control.answers)
            new = [at for at in answers if float(at) not in held]
        else:
            new = list(answers[: total - self.seen])
        self.seen = total
        return new

    def turn(self, reply: Sequence[Any]) -> Turn | None:
        """The turn a reply of `TURN` gave; None: none, the spacing was computed after other
        cuts than Redis's (ask again, with the spacing of the mirror now up to date)."""
        now, cuts = self.mirror(reply)
        taken = int(reply[11])
        if taken < 0:
            return None
        at = float(_text(reply[10]))
        if taken == 0:  # the last place in line now, for the next (`line_spacing`)
            self.later = max(self.later, at)
        return Turn(at - now, taken == 1, cuts, taken == 2)

    def refused(self, error: JobPollError, sent_in: int) -> Cut | None:
        """A throttling error answered a poll sent in cut `sent_in` (the mirror fresh from
        `READ`): what to write to the shared state, if anything."""
        retry_after, certain = refusal_of(error)
        control = self.control
        if control.throttled(self.now(), sent_in, retry_after, certain=certain):
            return Cut(sent_in, attrs.evolve(control.state), control.hold_until)
        if retry_after is not None:
            return Cut(None, control.state, control.hold_until)
        return None

    def accepted(self) -> float:
        """This worker's poll was accepted, now: its time on Redis's clock, to be counted
        there for every worker. A bare refusal right after it is taken for a stray one
        (`RateControl.throttled`)."""
        now = self.now()
        self.control.heard(now)
        return now


def _state_of(rate: str, peak: str, cut_at: str, cuts: str) -> tuple[RateState, int]:
    """The shared `RateState` and cuts as Redis keeps them; none (not held to any rate) for
    what does not read as one."""
    held = _number(rate)
    if held is None or held > 0:
        try:
            return RateState(rate=held, peak=_number(peak), cut_at=_number(cut_at) or 0.0), int(
                cuts
            )
        except ValueError:
            pass
    return RateState(), 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(text: str) -> float | None:
    """A finite number, or None (nothing, or not a number)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None

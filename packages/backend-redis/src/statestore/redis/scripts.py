"""Server-side Lua scripts: each write that touches several keys is one ``EVALSHA``, hence one round trip.

All keys a script touches share the hash tag of one task or asset (see :mod:`.layout`), so the
scripts run unchanged on Redis Cluster. The chunk scripts derive value names from the index they
read; those names are in the same slot as the declared keys, which Redis Cluster allows.
The backend registers them with redis-py (``register_script``), which calls them by SHA1 and
loads them again after a ``NOSCRIPT`` reply (a restarted server, a failover, a new cluster node).

No script runs for long: ``SET``/``DELETE`` touch a handful of keys, and ``CLEAR_CHUNK`` /
``PRUNE_CHUNK`` handle at most ``ARGV[1]`` members per call (the client calls them until a call
returns fewer), so a clear or cleanup of any size never blocks the server for more than a few ms.

Every call of a script runs its whole text, so ``SET`` and ``DELETE`` finish their common cases
(an overwrite keeping its expiry, a delete that leaves the index's expiry alone) before the shared
helpers are even defined: Lua builds a closure per ``local function`` on every call.
"""

from __future__ import annotations

__all__ = ["CLEAR_CHUNK", "DELETE", "PRUNE_CHUNK", "PRUNE_EVERY", "SET"]

PRUNE_EVERY = 64
"""An index is pruned of expired entries when a write brings its size to a multiple of this."""

# Helpers shared by the scripts. Script arguments stay few: the member and the map index are
# read back from the key names, the expiry from the stored value's header. An index (and a
# task's map-index set) expires with its latest member and persists while any member never
# expires, so it never outlives its values. A write only ever moves those expiries later, which
# Redis 7's ``PEXPIREAT ... GT`` does without reading the index (a persistent zset counts as never
# expiring, so only a zset created by this write needs a plain ``PEXPIREAT``); the exact
# re-derivation from the latest member runs only when an expiry may move earlier. Entries of
# values that Redis expired are pruned by ``cleanup()``, from a task's map-index set whenever it
# gains a map index, and from an index whenever a new member brings its size to a multiple of
# PRUNE_EVERY: an index grows past each multiple only after shedding its expired entries, so they
# never accumulate, and most writes skip the two commands of a prune.
_PRELUDE = """
local function base_of(index) return string.sub(index, 1, -6) end  -- index = base .. '#keys'
local function map_index_of(index) return string.match(base_of(index), '[^/]+$') end
local function score(s) if s == 'inf' then return math.huge end return tonumber(s) end

local function expire_like_latest(zset)
  local top = redis.call('ZRANGE', zset, -1, -1, 'WITHSCORES')
  if #top == 0 then return nil end
  if top[2] == 'inf' then redis.call('PERSIST', zset) else redis.call('PEXPIREAT', zset, top[2]) end
  return top[2]
end

local function now_ms()
  local t = redis.call('TIME')
  return t[1] .. string.format('%03d', math.floor(t[2] / 1000))
end

-- Add member to zset with score expire_at ('inf': never) and make the zset's expiry cover it,
-- pruning expired entries when the zset gains a member and its size is a multiple of prune_every.
-- Returns whether the zset's expiry moved (it did if the zset is new).
local function add_and_extend(zset, expire_at, member, prune_every)
  if redis.call('ZADD', zset, expire_at, member) == 1 then
    local size = redis.call('ZCARD', zset)
    if size == 1 then
      if expire_at ~= 'inf' then redis.call('PEXPIREAT', zset, expire_at) end
      return true
    end
    if size % prune_every == 0 then redis.call('ZREMRANGEBYSCORE', zset, '-inf', '(' .. now_ms()) end
  end
  if expire_at == 'inf' then return redis.call('PERSIST', zset) == 1 end
  return redis.call('PEXPIREAT', zset, expire_at, 'GT') == 1
end

-- Re-derive the expiry of the index and the entry and expiry of its map index (maps is nil for assets).
local function track(index, maps)
  local latest = expire_like_latest(index)
  if maps then
    local map_index = map_index_of(index)
    if latest then redis.call('ZADD', maps, latest, map_index) else redis.call('ZREM', maps, map_index) end
    expire_like_latest(maps)
  end
end

-- Remove index members (and, when base is given, their values) in one call.
local function drop(index, base, members)
  if #members == 0 then return 0 end
  if base then
    local names = {}
    for i, member in ipairs(members) do names[i] = base .. '/' .. member end
    redis.call('UNLINK', unpack(names))
  end
  redis.call('ZREM', index, unpack(members))
  return #members
end
"""

# The common case first: member from the names (value = base .. '/' .. member, index = base ..
# '#keys'), expiry from the stored string's header; an overwrite keeping its expiry stops there.
_SET_HEAD = """
-- KEYS: value, index[, maps]  ARGV: '<expiry in epoch ms, or nothing>:<JSON>'
local member = string.sub(KEYS[1], #KEYS[2] - 3)
local expire_at = string.match(ARGV[1], '^(%d*):')
local old = redis.call('ZSCORE', KEYS[2], member)
if expire_at == '' then
  redis.call('SET', KEYS[1], ARGV[1])
  expire_at = 'inf'
else
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', expire_at)
end
-- Listed with the same expiry (an overwrite that keeps it): the index and the map-index set
-- already cover it. Scores read back as written (integers of ms, or 'inf'); any other spelling
-- just takes the general path below.
if old == expire_at then return 1 end
"""

SET = (
    _SET_HEAD
    + _PRELUDE
    + f"""
if old and score(expire_at) < score(old) then  -- an expiry brought forward: re-derive exactly
  redis.call('ZADD', KEYS[2], expire_at, member)
  track(KEYS[2], KEYS[3])
elseif add_and_extend(KEYS[2], expire_at, member, {PRUNE_EVERY}) and KEYS[3] then
  -- The map-index set holds each map index's index expiry; it moves only when that one did.
  add_and_extend(KEYS[3], expire_at, map_index_of(KEYS[2]), 1)
end
return 1
"""
)

# Only removing the latest member of an index can move its expiry earlier; any other delete
# stops before the helpers.
DELETE = (
    """
-- KEYS: value, index[, maps]
local removed = redis.call('DEL', KEYS[1])
local member = string.sub(KEYS[1], #KEYS[2] - 3)
local latest = redis.call('ZRANGE', KEYS[2], -1, -1)
if redis.call('ZREM', KEYS[2], member) == 0 or latest[1] ~= member then return removed end
"""
    + _PRELUDE
    + """
track(KEYS[2], KEYS[3])
return removed
"""
)

CLEAR_CHUNK = (
    _PRELUDE
    + """
-- KEYS: index[, maps]  ARGV: limit
-- Delete up to limit values listed in the index, and their entries; returns how many. A call that
-- returns fewer than limit emptied the index, and then takes its map index out of the task's set.
local limit = tonumber(ARGV[1])
local removed = drop(KEYS[1], base_of(KEYS[1]), redis.call('ZRANGE', KEYS[1], 0, limit - 1))
if removed < limit and KEYS[2] then
  redis.call('ZREM', KEYS[2], map_index_of(KEYS[1]))
  expire_like_latest(KEYS[2])
end
return removed
"""
)

PRUNE_CHUNK = (
    _PRELUDE
    + """
-- KEYS: index[, maps]  ARGV: limit
-- Remove up to limit entries of values Redis already expired, then re-derive the index's expiry
-- (and its map-index entry); returns how many.
local limit = tonumber(ARGV[1])
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now_ms(), 'LIMIT', 0, limit)
local removed = drop(KEYS[1], nil, expired)
if removed > 0 then track(KEYS[1], KEYS[2]) end
return removed
"""
)

"""Server-side Lua scripts: each write that touches several keys is one ``EVALSHA``, hence one round trip.

All keys a script touches share the hash tag of one task or asset (see :mod:`.layout`), so the
scripts run unchanged on Redis Cluster. The chunk scripts derive value names from the index they
read; those names are in the same slot as the declared keys, which Redis Cluster allows.
The backend registers them with redis-py (``register_script``), which calls them by SHA1 and
loads them again after a ``NOSCRIPT`` reply (a restarted server, a failover, a new cluster node).

No script runs for long: ``SET``/``DELETE`` touch a handful of keys, and ``CLEAR_CHUNK`` /
``PRUNE_CHUNK`` handle at most ``ARGV[1]`` members per call (the client calls them until a call
returns fewer), so a clear or cleanup of any size never blocks the server for more than a few ms.
"""

from __future__ import annotations

__all__ = ["CLEAR_CHUNK", "DELETE", "PRUNE_CHUNK", "SET"]

# Helpers shared by the scripts. Script arguments stay few: the member and the map index are
# read back from the key names, the expiry from the stored value's header. An index (and a
# task's map-index set) expires with its latest member and persists while any member never
# expires, so it never outlives its values. A write only ever moves those expiries later, which
# Redis 7's ``PEXPIREAT ... GT`` does without reading the index (a persistent zset counts as never
# expiring, so only a zset created by this write needs a plain ``PEXPIREAT``); the exact
# re-derivation from the latest member runs only when an expiry may move earlier. Entries of
# values that Redis expired are pruned whenever an index gains a member and by ``cleanup()``.
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

-- Add member to zset with score expire_at ('inf': never) and make the zset's expiry cover it.
-- Returns whether the zset's expiry moved (it did if the zset is new).
local function add_and_extend(zset, expire_at, member)
  if redis.call('ZADD', zset, expire_at, member) == 1 then
    if redis.call('ZCARD', zset) == 1 then
      if expire_at ~= 'inf' then redis.call('PEXPIREAT', zset, expire_at) end
      return true
    end
    redis.call('ZREMRANGEBYSCORE', zset, '-inf', '(' .. now_ms())
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

SET = (
    _PRELUDE
    + """
-- KEYS: value, index[, maps]  ARGV: '<expiry in epoch ms, or nothing>:<JSON>'
local expire_at = string.match(ARGV[1], '^(%d*):')
local member = string.sub(KEYS[1], #base_of(KEYS[2]) + 2)
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
if old and score(expire_at) < score(old) then  -- an expiry brought forward: re-derive exactly
  redis.call('ZADD', KEYS[2], expire_at, member)
  track(KEYS[2], KEYS[3])
elseif add_and_extend(KEYS[2], expire_at, member) and KEYS[3] then
  -- The map-index set holds each map index's index expiry; it moves only when that one did.
  add_and_extend(KEYS[3], expire_at, map_index_of(KEYS[2]))
end
return 1
"""
)

DELETE = (
    _PRELUDE
    + """
-- KEYS: value, index[, maps]
local removed = redis.call('DEL', KEYS[1])
local member = string.sub(KEYS[1], #base_of(KEYS[2]) + 2)
local latest = redis.call('ZRANGE', KEYS[2], -1, -1)
if redis.call('ZREM', KEYS[2], member) == 1 and latest[1] == member then track(KEYS[2], KEYS[3]) end
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

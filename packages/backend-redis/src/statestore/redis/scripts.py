"""Server-side Lua scripts: every write that touches several keys is one ``EVALSHA``, hence one round trip.

All keys a script touches share the hash tag of one task or asset (see :mod:`.layout`), so the
scripts run unchanged on Redis Cluster. The clear scripts derive value names from the index they
read; those names are in the same slot as the declared keys, which Redis Cluster allows.
Scripts are shared by the sync and the async client; each is loaded once per server (``EVAL``
caches it after a ``NOSCRIPT`` reply).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

__all__ = ["CLEAR_SCOPE", "CLEAR_TASK", "DELETE", "SET", "Script"]


@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA1 (the name ``EVALSHA`` calls it by)."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


# Helpers shared by the scripts. An index (or the map-index set of a task) expires with its
# latest member and persists while any member never expires, so it never outlives its values.
_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return t[1] .. string.format('%03d', math.floor(t[2] / 1000))
end

local function expire_like_latest(zset)
  local top = redis.call('ZRANGE', zset, -1, -1, 'WITHSCORES')
  if #top == 0 then return nil end
  if top[2] == 'inf' then redis.call('PERSIST', zset) else redis.call('PEXPIREAT', zset, top[2]) end
  return top[2]
end

-- Drop index entries whose values Redis has expired, then re-derive the expiries of the index
-- and of the task's map-index set (maps is nil for assets).
local function track(index, maps, map_index)
  local now = now_ms()
  redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. now)
  local latest = expire_like_latest(index)
  if maps then
    if latest then redis.call('ZADD', maps, latest, map_index) else redis.call('ZREM', maps, map_index) end
    redis.call('ZREMRANGEBYSCORE', maps, '-inf', '(' .. now)
    expire_like_latest(maps)
  end
end

-- Delete every value listed in the index of the scope named base, and the index.
local function drop_scope(base)
  local index = base .. '#keys'
  local members = redis.call('ZRANGE', index, 0, -1)
  for i = 1, #members, 1000 do
    local names = {}
    for j = i, math.min(i + 999, #members) do names[#names + 1] = base .. '/' .. members[j] end
    redis.call('DEL', unpack(names))
  end
  redis.call('DEL', index)
  return #members
end
"""

SET = Script(
    _PRELUDE
    + """
-- KEYS: value, index[, maps]  ARGV: value, expire_at_ms ('' = never), member[, map_index]
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[2], 'inf', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
end
track(KEYS[2], KEYS[3], ARGV[4])
return 1
"""
)

DELETE = Script(
    _PRELUDE
    + """
-- KEYS: value, index[, maps]  ARGV: member[, map_index]
local removed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
track(KEYS[2], KEYS[3], ARGV[2])
return removed
"""
)

CLEAR_SCOPE = Script(
    _PRELUDE
    + """
-- KEYS: index[, maps]  ARGV: scope base[, map_index]
local removed = drop_scope(ARGV[1])
if KEYS[2] then
  redis.call('ZREM', KEYS[2], ARGV[2])
  expire_like_latest(KEYS[2])
end
return removed
"""
)

CLEAR_TASK = Script(
    _PRELUDE
    + """
-- KEYS: maps  ARGV: task base (prefix and hash tag)
local removed = 0
for _, map_index in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  removed = removed + drop_scope(ARGV[1] .. '/' .. map_index)
end
redis.call('DEL', KEYS[1])
return removed
"""
)

"""The Lua scripts of the redis backend: every write that must be atomic on the server.

Counter merges, expiry and lease compare-and-set run in one script call each, so two
servers writing the same key never interleave (``redis_backend`` holds the key layout).
"""

from __future__ import annotations

# KEYS[1] entry; ARGV data, used_at, hits, keep_until, retain_s, now. Merge counters (max),
# extend keep_until by the merged use, drop the key if already expired.
PUT_LUA = """
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then redis.call('DEL', KEYS[1]) end
local used, hits = tonumber(ARGV[2]), tonumber(ARGV[3])
local old = redis.call('HMGET', KEYS[1], 'used_at', 'hits')
local old_used, old_hits = tonumber(old[1]), tonumber(old[2])
if old_used and old_used > used then used = old_used end
if old_hits and old_hits > hits then hits = old_hits end
local keep = tonumber(ARGV[4])
if used + tonumber(ARGV[5]) > keep then keep = used + tonumber(ARGV[5]) end
if keep < tonumber(ARGV[6]) then redis.call('DEL', KEYS[1]) return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'used_at', string.format('%.17g', used),
  'hits', string.format('%d', hits), 'keep_until', string.format('%.17g', keep))
redis.call('PEXPIREAT', KEYS[1], math.ceil(keep * 1000))
return 1
"""

# KEYS entries; ARGV retain_s, now, then (used_at, hits) per key. Live hashes only.
TOUCH_LUA = """
local retain, now = tonumber(ARGV[1]), tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  if redis.call('TYPE', key).ok == 'hash' then
    local f = redis.call('HMGET', key, 'used_at', 'hits', 'keep_until')
    local old_used, old_hits, keep = tonumber(f[1]), tonumber(f[2]), tonumber(f[3])
    if old_used and old_hits and keep and keep >= now then
      local used, add = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2])
      if old_used > used then used = old_used end
      if used + retain > keep then keep = used + retain end
      redis.call('HSET', key, 'used_at', string.format('%.17g', used),
        'hits', string.format('%d', old_hits + add), 'keep_until', string.format('%.17g', keep))
      redis.call('PEXPIREAT', key, math.ceil(keep * 1000))
    end
  end
end
return 0
"""

# KEYS[1] entry. Delete it; return its keep_until (false when absent or not ours).
DELETE_LUA = """
local kind = redis.call('TYPE', KEYS[1]).ok
if kind == 'none' then return false end
local keep = false
if kind == 'hash' then keep = redis.call('HGET', KEYS[1], 'keep_until') end
redis.call('DEL', KEYS[1])
return keep
"""

# KEYS[1] entry; ARGV data as read, '1' if data was absent. Delete garbage unless rewritten.
DROP_GARBAGE_LUA = """
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' then return redis.call('DEL', KEYS[1]) end
local data = redis.call('HGET', KEYS[1], 'data')
if (data == false and ARGV[2] == '1') or data == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1] lease; ARGV owner, ttl_ms. Extend only our own lease.
EXTEND_LEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS[1] lease; ARGV owner. Compare-and-delete.
RELEASE_LEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

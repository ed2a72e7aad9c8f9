--[[
  The due notifications of a partition, for its owner to dispatch: high priority first, then
  normal, then low, each oldest first. Fenced like the commit, so a paused former owner
  claims nothing, and a claimed notification leaves the due sets in the same step: it fires
  once. In the same call, what else the owner's tick works on: the notifications being
  dispatched (claimed now, or left half-way by a former owner) and the live recipients whose
  time to answer is up (one call per partition and tick instead of three).

  Input:
    KEYS[1] partition lease   thr:{p<n>}:lease
    KEYS[2..4] due sets       thr:{p<n>}:ntf:due:high, …:normal, …:low (id → sendAt, ms)
    KEYS[5] dispatching set   thr:{p<n>}:ntf:dispatching (id → claim time, ms)
    KEYS[6] waiting set       thr:{p<n>}:ntf:waiting ("<id> <member>" → fallback time, ms)
    ARGV[1] expected lease value
    ARGV[2] now, ms since epoch
    ARGV[3] most notifications to claim
    ARGV[4] notification key prefix of the partition: thr:{p<n>}:ntf:
    ARGV[5] most dispatching ids and waiting entries to return, each

  Output (redis/codes.ts): -1 FENCED, or three lists (each maybe empty): the ids claimed now;
  the ids being dispatched (those claimed now included), oldest claim first; the waiting
  entries due by now, earliest first
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local claimed = {}
local left = tonumber(ARGV[3])
for k = 2, 4 do
  if left <= 0 then
    break
  end
  local due = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', ARGV[2], 'LIMIT', 0, left)
  for _, id in ipairs(due) do
    redis.call('ZREM', KEYS[k], id)
    redis.call('ZADD', KEYS[5], ARGV[2], id)
    redis.call('HSET', ARGV[4] .. id, 'status', 'dispatching', 'dispatchedAt', ARGV[2])
    claimed[#claimed + 1] = id
  end
  left = left - #due
end
local most = tonumber(ARGV[5])
local dispatching = redis.call('ZRANGE', KEYS[5], 0, most - 1)
local waiting = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', ARGV[2], 'LIMIT', 0, most)
return { claimed, dispatching, waiting }

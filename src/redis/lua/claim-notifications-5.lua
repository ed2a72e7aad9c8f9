--[[
  The due notifications of a partition, for its owner to dispatch: high priority first, then
  normal, then low, each oldest first. Fenced like the commit, so a paused former owner
  claims nothing, and a claimed notification leaves the due sets in the same step: it fires
  once.

  Input:
    KEYS[1] partition lease   thr:{p<n>}:lease
    KEYS[2..4] due sets       thr:{p<n>}:ntf:due:high, …:normal, …:low (id → sendAt, ms)
    KEYS[5] dispatching set   thr:{p<n>}:ntf:dispatching (id → claim time, ms)
    ARGV[1] expected lease value
    ARGV[2] now, ms since epoch
    ARGV[3] most notifications to claim
    ARGV[4] notification key prefix of the partition: thr:{p<n>}:ntf:

  Output (redis/codes.ts): -1 FENCED, or the claimed ids (a list, maybe empty)
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
return claimed

--[[
  Take a partition's lease with a fresh fencing token.

  Input:
    KEYS[1] lease          thr:{p<n>}:lease
    KEYS[2] token counter  thr:{p<n>}:lease-token
    ARGV[1] node id
    ARGV[2] ttl, ms

  Output: the new lease value "<node>:<token>", or nil when another node holds it.
  A lease left by an earlier life of this same node id is taken over with a new token,
  so a restarted node need not wait for its own old lease to expire; whatever that
  earlier life still has in flight is fenced by the token change.
]]
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, string.len(ARGV[1]) + 1) ~= ARGV[1] .. ':' then
  return nil
end
local value = ARGV[1] .. ':' .. redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value

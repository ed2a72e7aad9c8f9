--[[
  Extend a lease only if it still holds our value (compare-and-extend).

  Input:
    KEYS[1] lease  thr:{p<n>}:lease
    ARGV[1] expected lease value "<node>:<token>"
    ARGV[2] ttl, ms

  Output (redis/codes.ts): 1 OK renewed, 0 NONE lost (expired or taken by another node)
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0

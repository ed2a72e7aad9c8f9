--[[
  Give a lease up, only if it still holds our value (compare-and-delete).

  Input:
    KEYS[1] lease  thr:{p<n>}:lease
    ARGV[1] expected lease value "<node>:<token>"

  Output (redis/codes.ts): 1 OK released, 0 NONE it was no longer ours
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0

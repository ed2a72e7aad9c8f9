--[[
  Registers (or replaces) one Web Push subscription of a member, up to a cap.

  Input:
    KEYS[1] the member's subscriptions  thr:member:<id>:push (hash: endpoint → JSON keys)
    ARGV[1] endpoint URL
    ARGV[2] the subscription's JSON {p256dh, auth, addedAt}
    ARGV[3] most subscriptions a member may have

  Output (redis/codes.ts):
     1 OK added
     2 ALREADY the endpoint was there: replaced
   -11 FULL the member has ARGV[3] others already: nothing written
]]
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 2
end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return -11
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1

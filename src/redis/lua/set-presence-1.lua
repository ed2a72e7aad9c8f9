--[[
  Sets one node's count of a member's open WebSockets in the member's presence hash, and
  tells what the member's presence was before and is after, so the caller knows whether the
  member came online or went offline. An absolute count, not an increment: a write that
  failed or whose reply was lost is put right by the next one, and a sweep is the same call.

  Input:
    KEYS[1] member presence  thr:presence:<member>
    ARGV[1] node id
    ARGV[2] the member's open WebSockets on that node now; 0 deletes the node's field (the
            last one closed, or the node is gone and being swept)

  Output: { before, nodes }: counts, not codes of redis/codes.ts
    before  the node's count before the call (0: it had no field)
    nodes   how many nodes have a field after it
  Came online: before = 0, ARGV[2] > 0, nodes = 1. Went offline: before > 0, ARGV[2] = 0,
  nodes = 0.
]]
local before = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local count = tonumber(ARGV[2])
if count > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], count)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return { before, redis.call('HLEN', KEYS[1]) }

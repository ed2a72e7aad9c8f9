--[[
  Record this node's heartbeat and return the live membership, with Redis's clock as the
  only clock, so nodes on machines with skewed clocks still agree on who is alive.

  Input:
    KEYS[1] node zset  thr:nodes
    ARGV[1] node id
    ARGV[2] node ttl, ms: members silent longer than this are dropped

  Output: { now (ms), live node id, ... } sorted by id
]]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
local live = redis.call('ZRANGE', KEYS[1], 0, -1)
table.sort(live)
table.insert(live, 1, now)
return live

--[[
  Move outbox jobs whose retry time has come back into the outbox stream.

  Input:
    KEYS[1] retry set      thr:{p<n>}:outbox:retry (score: not before, ms)
    KEYS[2] outbox stream  thr:{p<n>}:outbox
    ARGV[1] now, ms since epoch
    ARGV[2] most jobs to move
    ARGV[3] "1" on a Redis Cluster: SPUBLISH to KEYS[2] .. ":wake" after moving any

  Output: the number of jobs moved
]]
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, job in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(job)))
  redis.call('ZREM', KEYS[1], job)
end
if #due > 0 and ARGV[3] == '1' then
  redis.call('SPUBLISH', KEYS[2] .. ':wake', '')
end
return #due

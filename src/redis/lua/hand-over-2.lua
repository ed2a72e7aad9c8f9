--[[
  Hands a room message a member missed to one of their ways (a `missed` job's push, webhook
  or SMS delivery, DESIGN §4): once per (message, channel, recipient). The recipient's state
  in the message receipt is the marker, so a missed job run again (a crash before it was
  settled, another owner) or a way the room reaches already (a linked webhook that is a
  member itself) adds nothing.

  Input:
    KEYS[1] message receipt  thr:{p<n>}:msg:<envelope id>
    KEYS[2] outbox stream    thr:{p<n>}:outbox
    ARGV[1] channel
    ARGV[2] recipient member id of that channel (user:…, webhook:…, phone:…)
    ARGV[3] the job's fields, JSON array [name, value, ...]
    ARGV[4] "1" on a Redis Cluster: SPUBLISH to KEYS[2] .. ":wake" after adding the job

  Output (redis/codes.ts):
     1 OK the job is in the outbox, the recipient queued (<channel>:recipients, :queued)
     2 ALREADY that recipient of the channel has (or had) the message: nothing written
     0 NONE no receipt (the message is older than the dedupe window): nothing written
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local field = ARGV[1] .. ':' .. ARGV[2]
if redis.call('HSETNX', KEYS[1], field, 'queued') == 0 then
  return 2
end
redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':recipients', 1)
redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':queued', 1)
redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(ARGV[3])))
if ARGV[4] == '1' then
  redis.call('SPUBLISH', KEYS[2] .. ':wake', '')
end
return 1

--[[
  Record a recipient's delivery state (the outbox runner's result, or a receiver's report
  such as a Twilio status callback), never moving backwards: queued < sent < delivered |
  undelivered | failed | expired, and a final state is final. A late or out-of-order report
  therefore changes nothing. expired: not sent at all, its time (the job's exp) ran out.

  Input:
    KEYS[1] message receipt  thr:{p<n>}:msg:<envelope id>
    ARGV[1] channel name
    ARGV[2] recipient member id
    ARGV[3] new state: queued, sent, delivered, undelivered, failed or expired
    ARGV[4] error code, or ""
    ARGV[5] the receiver's reference for the delivery (Twilio's MessageSid), or "": recorded
            (<channel>:<member>:ref) whatever the state, so a delivery the receiver has is
            never sent again (see begin-send-2.lua)

  Output (redis/codes.ts):
     1 OK moved (the per-state counters <channel>:<state> follow)
     2 ALREADY the recipient is in that state already
     0 NONE unknown message or recipient
    -9 STALE earlier than the current state
   -10 UNKNOWN_STATE
]]
local rank = { queued = 1, sent = 2, delivered = 3, undelivered = 3, failed = 3, expired = 3 }
local new = ARGV[3]
if rank[new] == nil then
  return -10
end
local ch = ARGV[1]
local field = ch .. ':' .. ARGV[2]
local current = redis.call('HGET', KEYS[1], field)
if not current then
  return 0
end
if ARGV[5] and ARGV[5] ~= '' then
  redis.call('HSET', KEYS[1], field .. ':ref', ARGV[5])
end
if current == new then
  return 2
end
if rank[current] >= rank[new] then
  return -9
end
redis.call('HSET', KEYS[1], field, new)
redis.call('HINCRBY', KEYS[1], ch .. ':' .. current, -1)
redis.call('HINCRBY', KEYS[1], ch .. ':' .. new, 1)
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], field .. ':error', ARGV[4])
end
return 1

--[[
  Record a recipient's SMS status (outbox result or Twilio status callback), never moving
  backwards: queued < sent < delivered | undelivered | failed, and a final state is final.
  A late or out-of-order callback therefore changes nothing.

  Input:
    KEYS[1] message receipt  thr:{p<n>}:msg:<envelope id>
    ARGV[1] recipient, E.164
    ARGV[2] new status: queued, sent, delivered, undelivered or failed
    ARGV[3] Twilio error code, or ""
    ARGV[4] Twilio's MessageSid for the recipient, or "": recorded (sms:<E.164>:sid) whatever
            the status, so a text Twilio has is never sent again (see begin-send-2.lua)

  Output:
     1 moved (the per-status counters sms:<status> follow)
     2 not moved: the recipient is in that state already
     0 not moved: earlier than the current status, or an unknown message or recipient
    -1 unknown status
]]
local rank = { queued = 1, sent = 2, delivered = 3, undelivered = 3, failed = 3 }
local new = ARGV[2]
if rank[new] == nil then
  return -1
end
local field = 'sms:' .. ARGV[1]
local current = redis.call('HGET', KEYS[1], field)
if not current then
  return 0
end
if ARGV[4] and ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], field .. ':sid', ARGV[4])
end
if current == new then
  return 2
end
if rank[current] >= rank[new] then
  return 0
end
redis.call('HSET', KEYS[1], field, new)
redis.call('HINCRBY', KEYS[1], 'sms:' .. current, -1)
redis.call('HINCRBY', KEYS[1], 'sms:' .. new, 1)
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], field .. ':error', ARGV[3])
end
return 1

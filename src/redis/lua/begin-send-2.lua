--[[
  Right before one Twilio request (DESIGN §4): check that the partition's lease is still ours
  and record an attempt marker for the delivery, or say why not to send. The caller makes the
  request with no other await in between, so a node that lost its lease sends nothing new.

  A marker that is there already was written by an earlier attempt: by this node before a
  timeout, or by a former owner that crashed or paused mid-send. That attempt's outcome is
  unknown (ambiguous) unless the job carries it as known not to have sent (ARGV[4]).

  Input:
    KEYS[1] partition lease    thr:{p<n>}:lease
    KEYS[2] delivery hash      thr:{p<n>}:msg:<envelope id> (relays, receipts) or
                               thr:{p<n>}:reply:<inbound MessageSid> (keyword replies)
    ARGV[1] expected lease value "<node>:<token>"
    ARGV[2] delivery field prefix: sms:<E.164> (a relay; the field itself is its status),
            receipt:<E.164> or reply:<E.164>
    ARGV[3] now, ms since epoch
    ARGV[4] marker of an earlier attempt known not to have reached Twilio, or ""
    ARGV[5] how long an attempt may be in flight (sms.sendTimeoutMs), ms
    ARGV[6] ttl, ms, of the delivery hash should this script create it

  Fields: <prefix>:attempt = "<lease value>|<ms>", <prefix>:sid = Twilio's MessageSid.

  Output:
    { -1 }                fenced: nothing written, do not send
    { 1, marker }         send (first attempt, or the earlier one is known not to have sent)
    { 2, sid, status }    Twilio has it already (a sid, or a status past queued): do not send
    { 3, wait ms }        an earlier attempt may still be in flight: try again after wait ms
    { 4, marker, earlier marker }  ambiguous: the earlier attempt is older than ARGV[5] and
                          left no sid; send again (the caller counts it)
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return { -1 }
end
local prefix = ARGV[2]
local now = tonumber(ARGV[3])
local sid = redis.call('HGET', KEYS[2], prefix .. ':sid')
local status = redis.call('HGET', KEYS[2], prefix)
if sid or (status and status ~= 'queued') then
  return { 2, sid or '', status or '' }
end
local earlier = redis.call('HGET', KEYS[2], prefix .. ':attempt')
local marker = ARGV[1] .. '|' .. ARGV[3]
local code = 1
if earlier and earlier ~= ARGV[4] then
  local at = tonumber(string.match(earlier, '|(%d+)$') or '0')
  local wait = at + tonumber(ARGV[5]) - now
  if wait > 0 then
    return { 3, wait }
  end
  code = 4
end
local created = redis.call('EXISTS', KEYS[2]) == 0
redis.call('HSET', KEYS[2], prefix .. ':attempt', marker)
if created then
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return { code, marker, earlier or '' }

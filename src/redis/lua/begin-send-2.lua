--[[
  Right before one delivery request (a Twilio text, a webhook; DESIGN §4): check that the partition's lease is still ours
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
    ARGV[2] delivery field prefix: <channel>:<member> (a relay; the field itself is its
            state), receipt:<member> or reply:<member>
    ARGV[3] now, ms since epoch
    ARGV[4] marker of an earlier attempt known not to have reached Twilio, or ""
    ARGV[5] how long an attempt may be in flight (the channel's send timeout), ms
    ARGV[6] ttl, ms, of the delivery hash should this script create it

  Fields: <prefix>:attempt = "<lease value>|<ms>", <prefix>:ref = the receiver's reference.

  Output (redis/codes.ts):
    { -1 }                FENCED: nothing written, do not send
    { 1, marker }         OK: send (first attempt, or the earlier one is known not to have sent)
    { 2, ref, state }     ALREADY: the receiver has it (a reference, or a state past queued)
    { -8, wait ms }       IN_FLIGHT: an earlier attempt may still be in flight: try again later
    { 3, marker, earlier marker }  AMBIGUOUS: the earlier attempt is older than ARGV[5] and
                          left no reference; send again (the caller counts it)
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return { -1 }
end
local prefix = ARGV[2]
local now = tonumber(ARGV[3])
local ref = redis.call('HGET', KEYS[2], prefix .. ':ref')
local status = redis.call('HGET', KEYS[2], prefix)
if ref or (status and status ~= 'queued') then
  return { 2, ref or '', status or '' }
end
local earlier = redis.call('HGET', KEYS[2], prefix .. ':attempt')
local marker = ARGV[1] .. '|' .. ARGV[3]
local code = 1
if earlier and earlier ~= ARGV[4] then
  local at = tonumber(string.match(earlier, '|(%d+)$') or '0')
  local wait = at + tonumber(ARGV[5]) - now
  if wait > 0 then
    return { -8, wait }
  end
  code = 3
end
local created = redis.call('EXISTS', KEYS[2]) == 0
redis.call('HSET', KEYS[2], prefix .. ':attempt', marker)
if created then
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return { code, marker, earlier or '' }

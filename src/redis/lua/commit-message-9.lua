--[[
  Commit one funnel entry: the fenced, idempotent heart of the relay (DESIGN §4).

  Input:
    KEYS[1] partition lease     thr:{p<n>}:lease
    KEYS[2] funnel stream       thr:{p<n>}:funnel
    KEYS[3] seen marker         thr:{p<n>}:seen:<envelope id>
    KEYS[4] message receipt     thr:{p<n>}:msg:<envelope id>
    KEYS[5] room hash           thr:{p<n>}:room:<r>
    KEYS[6] room seq            thr:{p<n>}:room:<r>:seq
    KEYS[7] room history        thr:{p<n>}:room:<r>:history
    KEYS[8] room members        thr:{p<n>}:room:<r>:members
    KEYS[9] outbox stream       thr:{p<n>}:outbox
    ARGV[1] expected lease value "<node>:<token>"
    ARGV[2] funnel entry id
    ARGV[3] consumer group
    ARGV[4] message frame up to the seq value: {"type":"message","room":"r","seq":
    ARGV[5] message frame after the seq value: ,"id":...}
    ARGV[6] live pub/sub channel of the room
    ARGV[7] default history length (the room's historyLength setting wins)
    ARGV[8] dedupe window, ms
    ARGV[9] commit time, ms since epoch
    ARGV[10] sender member id ("" for services), not counted as a recipient
    ARGV[11] room id
    ARGV[12] funnel entry id of the same room's previous entry in this batch, or "": it must
             be acknowledged already, so a failure earlier in a pipelined batch can never let
             a later message of the room overtake it
    ARGV[13] envelope id
    ARGV[14] SMS plan, JSON, or "" when the planner found (or remembers) that the room has
             no numbers; should it have numbers now, nothing is written (-4: plan again):
             { body: relay text, media: JSON array text or "", skip: [member ids not to text
               (opted out, invalid)], confirm: true to text the sender a receipt,
               via: the number the sender texted ("" = the room's first number) }
             Phone members other than the sender and the skipped get one outbox job each;
             the receipt's count leaves the skipped out (they are not reached),
             from the room's first number; their delivery id is "<room>~<E.164>~<envelope id>".

  Outbox jobs (stream fields): kind (relay | receipt), d (delivery id, "" for receipts), to,
  from, body, media, room, msg (envelope id), attempt (0).

  Output: { status, seq, recipients }
    status  1 committed now
            2 already committed earlier (seq is the original one; the entry is acknowledged)
           -1 fenced: the lease is not ours, nothing was written
           -2 the room no longer exists, nothing was written (the caller dead-letters it)
           -3 the previous entry of the room is not committed yet, nothing was written (retry)
           -4 the room has numbers but no SMS plan came with the entry (the planner's
              knowledge is out of date), nothing was written (plan again, retry)
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return { -1, 0, 0 }
end

if ARGV[12] ~= '' and #redis.call('XPENDING', KEYS[2], ARGV[3], ARGV[12], ARGV[12], 1) > 0 then
  return { -3, 0, 0 }
end

local previous = redis.call('GET', KEYS[3])
if previous then
  redis.call('XACK', KEYS[2], ARGV[3], ARGV[2])
  return { 2, tonumber(previous), tonumber(redis.call('HGET', KEYS[4], 'recipients') or '0') }
end

if redis.call('EXISTS', KEYS[5]) == 0 then
  return { -2, 0, 0 }
end

if ARGV[14] == '' then
  local numbers = redis.call('HGET', KEYS[5], 'numbers')
  if numbers and numbers ~= '[]' then
    return { -4, 0, 0 }
  end
end

local seq = redis.call('INCR', KEYS[6])
local frame = ARGV[4] .. seq .. ARGV[5]
local historyLength = tonumber(redis.call('HGET', KEYS[5], 'historyLength') or ARGV[7])
redis.call('XADD', KEYS[7], 'MAXLEN', '~', historyLength, seq .. '-0', 'm', frame)

local recipients = redis.call('SCARD', KEYS[8])
if ARGV[10] ~= '' and redis.call('SISMEMBER', KEYS[8], ARGV[10]) == 1 then
  recipients = recipients - 1
end

redis.call('SET', KEYS[3], seq, 'PX', ARGV[8])
redis.call('HSET', KEYS[4], 'room', ARGV[11], 'seq', seq, 'status', 'committed',
  'committedAt', ARGV[9], 'recipients', recipients)

if ARGV[14] ~= '' then
  local plan = cjson.decode(ARGV[14])
  local numbers = cjson.decode(redis.call('HGET', KEYS[5], 'numbers') or '[]')
  local from = numbers[1]
  if from then
    local skip = {}
    for _, m in ipairs(plan.skip) do skip[m] = true end
    local texted = 0
    for _, m in ipairs(redis.call('SMEMBERS', KEYS[8])) do
      if string.sub(m, 1, 6) == 'phone:' and m ~= ARGV[10] and not skip[m] then
        local to = string.sub(m, 7)
        redis.call('XADD', KEYS[9], '*', 'kind', 'relay', 'd', ARGV[11] .. '~' .. to .. '~' .. ARGV[13],
          'to', to, 'from', from, 'body', plan.body, 'media', plan.media, 'room', ARGV[11],
          'msg', ARGV[13], 'attempt', 0)
        redis.call('HSET', KEYS[4], 'sms:' .. to, 'queued')
        texted = texted + 1
      end
    end
    redis.call('HSET', KEYS[4], 'sms:recipients', texted, 'sms:queued', texted)
    if plan.confirm and string.sub(ARGV[10], 1, 6) == 'phone:' then
      local via = plan.via
      if via == '' then via = from end
      local name = redis.call('HGET', KEYS[5], 'name') or ARGV[11]
      -- The members it reaches: not those skipped (opted out of the room's number, invalid).
      local reached = recipients
      for m in pairs(skip) do
        if m ~= ARGV[10] and redis.call('SISMEMBER', KEYS[8], m) == 1 then
          reached = reached - 1
        end
      end
      redis.call('XADD', KEYS[9], '*', 'kind', 'receipt', 'd', '', 'to', string.sub(ARGV[10], 7),
        'from', via, 'body', 'Sent to ' .. name .. ' (' .. reached .. ')', 'media', '',
        'room', ARGV[11], 'msg', ARGV[13], 'attempt', 0)
    end
  end
end
redis.call('PEXPIRE', KEYS[4], ARGV[8])
redis.call('PUBLISH', ARGV[6], frame)
redis.call('XACK', KEYS[2], ARGV[3], ARGV[2])
return { 1, seq, recipients }

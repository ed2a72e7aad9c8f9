--[[
  Commit one funnel entry: the fenced, idempotent heart of the relay (DESIGN §4). It knows
  no channel: members are routed by the prefix of their id, and whatever a channel decides
  at commit time comes in its plan.

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
    KEYS[10] read markers       thr:{p<n>}:room:<r>:reads (the sender's moves to its message)
    KEYS[11] room activity      thr:{p<n>}:active (zset: room → last commit, ms; members' lists)
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
    ARGV[14] channel plans, JSON, or "": { <channel>: { skip: [member ids not reached],
             f: [field, value, ...] added to each of its jobs, extra: [{ to, kind,
             f: [...], member? }] jobs beside the members' (a text in f may hold
             "{recipients}"; with member = true, only while `to` is a member of the room) } }
    ARGV[15] routes, JSON: { <member-id prefix>: [<channel>, <gate>] }. Channel "" is the live
             path (counted, no job). A gate is a room hash field: the channel is active in a
             room only while that field is set (not "" or "[]"), and then needs a plan.
             Members of an unrouted prefix, or of an inactive channel, are not reached.
    ARGV[16] "1" on a Redis Cluster: after adding outbox jobs, SPUBLISH to KEYS[9] .. ":wake"
             (what the outbox's owner waits on there, in place of an XREAD BLOCK)

  The room hash caches its count of members outside the live path (field oob); membership
  changes delete it. Outbox jobs (stream fields): ch, kind (relay, or an extra job's),
  d (delivery id "<room>~<member>~<envelope id>", "" for extras), to (member id), room,
  msg (envelope id), attempt (0), m (the message frame), then the plan's fields, then exp
  (commit time + the room hash's deliverWithinMs, when set: not sent after that).
  Recipient states: <channel>:<member> = queued; counters <channel>:recipients and :queued.

  Output: { code, seq, recipients } with code (redis/codes.ts)
     1 OK committed now
     2 ALREADY committed earlier (seq is the original one; the entry is acknowledged)
    -1 FENCED the lease is not ours, nothing written
    -2 NO_ROOM the room no longer exists, nothing written (the caller dead-letters it)
    -6 OUT_OF_ORDER the previous entry of the room is not committed yet, nothing written
    -7 UNPLANNED a gated channel is active in the room and has no plan, nothing written
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return { -1, 0, 0 }
end

if ARGV[12] ~= '' and #redis.call('XPENDING', KEYS[2], ARGV[3], ARGV[12], ARGV[12], 1) > 0 then
  return { -6, 0, 0 }
end

local previous = redis.call('GET', KEYS[3])
if previous then
  redis.call('XACK', KEYS[2], ARGV[3], ARGV[2])
  return { 2, tonumber(previous), tonumber(redis.call('HGET', KEYS[4], 'recipients') or '0') }
end

if redis.call('EXISTS', KEYS[5]) == 0 then
  return { -2, 0, 0 }
end

local routes = cjson.decode(ARGV[15])
local plans = {}
if ARGV[14] ~= '' then plans = cjson.decode(ARGV[14]) end
local active = {}
for prefix, route in pairs(routes) do
  local ch, gate = route[1], route[2]
  if ch == '' or gate == '' then
    active[prefix] = true
  else
    local value = redis.call('HGET', KEYS[5], gate)
    if value and value ~= '' and value ~= '[]' then
      if not plans[ch] then return { -7, 0, 0 } end
      active[prefix] = true
    end
  end
end

local seq = redis.call('INCR', KEYS[6])
local frame = ARGV[4] .. seq .. ARGV[5]
local historyLength = tonumber(redis.call('HGET', KEYS[5], 'historyLength') or ARGV[7])
redis.call('XADD', KEYS[7], 'MAXLEN', '~', historyLength, seq .. '-0', 'm', frame)

-- The room's deliverWithinSeconds setting: every job of the message expires together.
local within = redis.call('HGET', KEYS[5], 'deliverWithinMs')
local exp = within and { 'exp', tostring(tonumber(ARGV[9]) + tonumber(within)) } or {}

local oob = redis.call('HGET', KEYS[5], 'oob')
local members
if not oob then
  members = redis.call('SMEMBERS', KEYS[8])
  oob = 0
  for _, m in ipairs(members) do
    if string.sub(m, 1, 5) ~= 'user:' then oob = oob + 1 end
  end
  redis.call('HSET', KEYS[5], 'oob', oob)
end

local recipients = 0
local jobs = 0
if tonumber(oob) == 0 then
  recipients = redis.call('SCARD', KEYS[8])
  if ARGV[10] ~= '' and redis.call('SISMEMBER', KEYS[8], ARGV[10]) == 1 then
    recipients = recipients - 1
  end
else
  members = members or redis.call('SMEMBERS', KEYS[8])
  local skip, queued = {}, {}
  for ch, plan in pairs(plans) do
    skip[ch] = {}
    for _, m in ipairs(plan.skip or {}) do skip[ch][m] = true end
  end
  for _, m in ipairs(members) do
    local prefix = string.match(m, '^([^:]+):')
    local route = prefix and routes[prefix]
    if m ~= ARGV[10] and route and active[prefix] then
      local ch = route[1]
      if ch == '' then
        recipients = recipients + 1
      elseif not (skip[ch] and skip[ch][m]) then
        recipients = recipients + 1
        local job = { 'ch', ch, 'kind', 'relay', 'd', ARGV[11] .. '~' .. m .. '~' .. ARGV[13],
          'to', m, 'room', ARGV[11], 'msg', ARGV[13], 'attempt', 0, 'm', frame }
        for _, v in ipairs(plans[ch] and plans[ch].f or {}) do job[#job + 1] = v end
        for _, v in ipairs(exp) do job[#job + 1] = v end
        redis.call('XADD', KEYS[9], '*', unpack(job))
        jobs = jobs + 1
        redis.call('HSET', KEYS[4], ch .. ':' .. m, 'queued')
        queued[ch] = (queued[ch] or 0) + 1
      end
    end
  end
  for ch, n in pairs(queued) do
    redis.call('HSET', KEYS[4], ch .. ':recipients', n, ch .. ':queued', n)
  end
end

for ch, plan in pairs(plans) do
  for _, extra in ipairs(plan.extra or {}) do
    if not extra.member or redis.call('SISMEMBER', KEYS[8], extra.to) == 1 then
      local job = { 'ch', ch, 'kind', extra.kind, 'd', '', 'to', extra.to, 'room', ARGV[11],
        'msg', ARGV[13], 'attempt', 0, 'm', frame }
      for _, v in ipairs(extra.f or {}) do
        job[#job + 1] = (string.gsub(v, '{recipients}', tostring(recipients)))
      end
      for _, v in ipairs(exp) do job[#job + 1] = v end
      redis.call('XADD', KEYS[9], '*', unpack(job))
      jobs = jobs + 1
    end
  end
end
if jobs > 0 and ARGV[16] == '1' then
  redis.call('SPUBLISH', KEYS[9] .. ':wake', '')
end

if ARGV[10] ~= '' then
  redis.call('HSET', KEYS[10], ARGV[10], seq)
end
redis.call('ZADD', KEYS[11], ARGV[9], ARGV[11])
redis.call('SET', KEYS[3], seq, 'PX', ARGV[8])
redis.call('HSET', KEYS[4], 'room', ARGV[11], 'seq', seq, 'status', 'committed',
  'committedAt', ARGV[9], 'recipients', recipients)
redis.call('PEXPIRE', KEYS[4], ARGV[8])
redis.call('PUBLISH', ARGV[6], frame)
redis.call('XACK', KEYS[2], ARGV[3], ARGV[2])
return { 1, seq, recipients }

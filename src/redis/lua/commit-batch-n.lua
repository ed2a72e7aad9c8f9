--[[
  Commit a batch of one partition's funnel entries, in stream order, in one script call: the
  fenced, idempotent heart of the relay (DESIGN §4). One call per partition per batch rather
  than one per message: the lease is checked once, the routes decoded once, and Redis and
  the node handle one command instead of dozens; the room hash fields a commit reads come in
  one HMGET, and the entries it settles are acknowledged together at its end. It knows no channel: members are routed by
  the prefix of their id, and whatever a channel decides at commit time comes in its plan.
  The number of keys comes first (ioredis: a command defined without numberOfKeys).

  Input (n entries; entry i = 0 .. n-1):
    KEYS[1] partition lease     thr:{p<n>}:lease
    KEYS[2] funnel stream       thr:{p<n>}:funnel
    KEYS[3] outbox stream       thr:{p<n>}:outbox
    KEYS[4] room activity       thr:{p<n>}:active (zset: room → last commit, ms; members' lists)
    KEYS[5 + 7i ..] the entry's keys:
      +0 seen marker            thr:{p<n>}:seen:<envelope id>
      +1 message receipt        thr:{p<n>}:msg:<envelope id>
      +2 room hash              thr:{p<n>}:room:<r>
      +3 room seq               thr:{p<n>}:room:<r>:seq
      +4 room history           thr:{p<n>}:room:<r>:history
      +5 room members           thr:{p<n>}:room:<r>:members
      +6 read markers           thr:{p<n>}:room:<r>:reads (the sender's moves to its message)
    ARGV[1] expected lease value "<node>:<token>"
    ARGV[2] consumer group
    ARGV[3] default history length (the room's historyLength setting wins)
    ARGV[4] dedupe window, ms
    ARGV[5] commit time, ms since epoch
    ARGV[6] routes, JSON: { <member-id prefix>: [<channel>, <gate>] }. Channel "" is the live
            path (counted, no job). A gate is a room hash field: the channel is active in a
            room only while that field is set (not "" or "[]"), and then needs a plan.
            Members of an unrouted prefix, or of an inactive channel, are not reached.
    ARGV[7] "1" on a Redis Cluster: after adding outbox jobs, SPUBLISH to KEYS[3] .. ":wake"
            (what the outbox's owner waits on there, in place of an XREAD BLOCK)
    ARGV[8 + 9i ..] the entry's values:
      +0 funnel entry id
      +1 message frame up to the seq value: {"type":"message","room":"r","seq":
      +2 message frame after the seq value: ,"id":...}
      +3 live pub/sub channel of the room
      +4 sender member id ("" for services), not counted as a recipient
      +5 room id
      +6 funnel entry id of the same room's previous entry, or "": it must be acknowledged
         already (by this call or an earlier one), so an entry that failed can never let a
         later message of its room overtake it
      +7 envelope id
      +8 channel plans, JSON, or "": { <channel>: { skip: [member ids not reached],
         f: [field, value, ...] added to each of its jobs, extra: [{ to, kind,
         f: [...], member? }] jobs beside the members' (a text in f may hold
         "{recipients}"; with member = true, only while `to` is a member of the room) } }

  The room hash caches its count of members outside the live path (field oob); membership
  changes delete it. Outbox jobs (stream fields): ch, kind (relay, or an extra job's),
  d (delivery id "<room>~<member>~<envelope id>", "" for extras), to (member id), room,
  msg (envelope id), attempt (0), m (the message frame), then the plan's fields, then exp
  (commit time + the room hash's deliverWithinMs, when set: not sent after that).
  Recipient states: <channel>:<member> = queued; counters <channel>:recipients and :queued.

  Output: one { code, seq, recipients } per entry, in order, with code (redis/codes.ts)
     1 OK committed now
     2 ALREADY committed earlier (seq is the original one; the entry is acknowledged)
    -1 FENCED the lease is not ours, nothing written (then for every entry)
    -2 NO_ROOM the room no longer exists, nothing written (the caller dead-letters it)
    -6 OUT_OF_ORDER the previous entry of the room is not committed yet, nothing written
    -7 UNPLANNED a gated channel is active in the room and has no plan, nothing written
   -13 FAILED a command of this entry's commit raised an error, given as the third value
       (out of memory, say): the entry stays pending; the others go on
]]
local n = (#KEYS - 4) / 7
local out = {}
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  for i = 1, n do out[i] = { -1, 0, 0 } end
  return out
end

local routes = cjson.decode(ARGV[6])
local now = tonumber(ARGV[5])
local jobs = 0
-- The room hash fields a commit reads, in one HMGET: 1 historyLength, 2 deliverWithinMs,
-- 3 oob, then each gated route's gate.
local fields = { 'historyLength', 'deliverWithinMs', 'oob' }
local gateAt = {}
for prefix, route in pairs(routes) do
  if route[1] ~= '' and route[2] ~= '' then
    fields[#fields + 1] = route[2]
    gateAt[prefix] = #fields
  end
end
-- Entries acknowledged by this call, acknowledged together at its end (one XACK).
local acked, ackIds = {}, {}
local function ack(id)
  acked[id] = true
  ackIds[#ackIds + 1] = id
end

local function commit(k, a)
  local seenKey, msgKey, roomKey, seqKey = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local historyKey, membersKey, readsKey = KEYS[k + 4], KEYS[k + 5], KEYS[k + 6]
  local entryId, sender, room, envId = ARGV[a], ARGV[a + 4], ARGV[a + 5], ARGV[a + 7]

  local before = ARGV[a + 6]
  if before ~= '' and not acked[before] and
      #redis.call('XPENDING', KEYS[2], ARGV[2], before, before, 1) > 0 then
    return { -6, 0, 0 }
  end

  local previous = redis.call('GET', seenKey)
  if previous then
    ack(entryId)
    return { 2, tonumber(previous), tonumber(redis.call('HGET', msgKey, 'recipients') or '0') }
  end

  if redis.call('EXISTS', roomKey) == 0 then
    return { -2, 0, 0 }
  end

  local plans = {}
  if ARGV[a + 8] ~= '' then plans = cjson.decode(ARGV[a + 8]) end
  local values = redis.call('HMGET', roomKey, unpack(fields))
  local active = {}
  for prefix, route in pairs(routes) do
    local at = gateAt[prefix]
    if not at then
      active[prefix] = true
    else
      local value = values[at]
      if value and value ~= '' and value ~= '[]' then
        if not plans[route[1]] then return { -7, 0, 0 } end
        active[prefix] = true
      end
    end
  end

  local seq = redis.call('INCR', seqKey)
  local frame = ARGV[a + 1] .. seq .. ARGV[a + 2]
  local historyLength = tonumber(values[1] or ARGV[3])
  redis.call('XADD', historyKey, 'MAXLEN', '~', historyLength, seq .. '-0', 'm', frame)

  -- The room's deliverWithinSeconds setting: every job of the message expires together.
  local within = values[2]
  local exp = within and { 'exp', tostring(now + tonumber(within)) } or {}

  local oob = values[3]
  local members
  if not oob then
    members = redis.call('SMEMBERS', membersKey)
    oob = 0
    for _, m in ipairs(members) do
      if string.sub(m, 1, 5) ~= 'user:' then oob = oob + 1 end
    end
    redis.call('HSET', roomKey, 'oob', oob)
  end

  local recipients = 0
  if tonumber(oob) == 0 then
    recipients = redis.call('SCARD', membersKey)
    if sender ~= '' and redis.call('SISMEMBER', membersKey, sender) == 1 then
      recipients = recipients - 1
    end
  else
    members = members or redis.call('SMEMBERS', membersKey)
    local skip, queued = {}, {}
    for ch, plan in pairs(plans) do
      skip[ch] = {}
      for _, m in ipairs(plan.skip or {}) do skip[ch][m] = true end
    end
    for _, m in ipairs(members) do
      local prefix = string.match(m, '^([^:]+):')
      local route = prefix and routes[prefix]
      if m ~= sender and route and active[prefix] then
        local ch = route[1]
        if ch == '' then
          recipients = recipients + 1
        elseif not (skip[ch] and skip[ch][m]) then
          recipients = recipients + 1
          local job = { 'ch', ch, 'kind', 'relay', 'd', room .. '~' .. m .. '~' .. envId,
            'to', m, 'room', room, 'msg', envId, 'attempt', 0, 'm', frame }
          for _, v in ipairs(plans[ch] and plans[ch].f or {}) do job[#job + 1] = v end
          for _, v in ipairs(exp) do job[#job + 1] = v end
          redis.call('XADD', KEYS[3], '*', unpack(job))
          jobs = jobs + 1
          redis.call('HSET', msgKey, ch .. ':' .. m, 'queued')
          queued[ch] = (queued[ch] or 0) + 1
        end
      end
    end
    for ch, count in pairs(queued) do
      redis.call('HSET', msgKey, ch .. ':recipients', count, ch .. ':queued', count)
    end
  end

  for ch, plan in pairs(plans) do
    for _, extra in ipairs(plan.extra or {}) do
      if not extra.member or redis.call('SISMEMBER', membersKey, extra.to) == 1 then
        local job = { 'ch', ch, 'kind', extra.kind, 'd', '', 'to', extra.to, 'room', room,
          'msg', envId, 'attempt', 0, 'm', frame }
        for _, v in ipairs(extra.f or {}) do
          job[#job + 1] = (string.gsub(v, '{recipients}', tostring(recipients)))
        end
        for _, v in ipairs(exp) do job[#job + 1] = v end
        redis.call('XADD', KEYS[3], '*', unpack(job))
        jobs = jobs + 1
      end
    end
  end

  if sender ~= '' then
    redis.call('HSET', readsKey, sender, seq)
  end
  redis.call('ZADD', KEYS[4], ARGV[5], room)
  redis.call('SET', seenKey, seq, 'PX', ARGV[4])
  redis.call('HSET', msgKey, 'room', room, 'seq', seq, 'status', 'committed',
    'committedAt', ARGV[5], 'recipients', recipients)
  redis.call('PEXPIRE', msgKey, ARGV[4])
  redis.call('PUBLISH', ARGV[a + 3], frame)
  ack(entryId)
  return { 1, seq, recipients }
end

for i = 0, n - 1 do
  local ok, result = pcall(commit, 5 + 7 * i, 8 + 9 * i)
  if ok then
    out[i + 1] = result
  else
    -- A Redis error table ({ err = ... }) or a Lua error string.
    local message = type(result) == 'table' and (result.err or tostring(result)) or tostring(result)
    out[i + 1] = { -13, 0, message }
  end
end
for i = 1, #ackIds, 500 do
  redis.call('XACK', KEYS[2], ARGV[2], unpack(ackIds, i, math.min(i + 499, #ackIds)))
end
if jobs > 0 and ARGV[7] == '1' then
  redis.call('SPUBLISH', KEYS[3] .. ':wake', '')
end
return out

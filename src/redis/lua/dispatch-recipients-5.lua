--[[
  One page of a notification's recipients, fenced by the partition's lease. Each recipient is
  recorded once (a page dispatched again after a crash adds nobody twice), with how they are
  reached: "live" (a frame to their WebSockets, then a fallback if they do not answer
  `received` in time), a channel (an outbox job), or a final state (expired; failed: no way
  to reach them).

  Input:
    KEYS[1] partition lease  thr:{p<n>}:lease
    KEYS[2] notification     thr:{p<n>}:ntf:<id> (hash)
    KEYS[3] recipients       thr:{p<n>}:ntf:<id>:to (member → state)
    KEYS[4] waiting set      thr:{p<n>}:ntf:waiting ("<id> <member>" → fallback time, ms)
    KEYS[5] outbox stream    thr:{p<n>}:outbox
    ARGV[1] expected lease value
    ARGV[2] notification id
    ARGV[3] fallback time for live recipients (ms), or "" for none (they count as sent)
    ARGV[4] the page's last member: where a resumed dispatch goes on from
    ARGV[5] "1" on a Redis Cluster: SPUBLISH to KEYS[5] .. ":wake" after adding jobs
    ARGV[6] JSON array of the outbox job's fields common to every recipient
    ARGV[7..] per recipient, three values: member, state (live, expired, failed, or a channel),
            and for a channel the member id it delivers to, else ""

  Output (redis/codes.ts): -1 FENCED, or the members recorded "live" now (to be sent the
  frame), a list
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
local live = {}
local added, queued, sent, jobs = 0, 0, 0, 0
local common = cjson.decode(ARGV[6])
for i = 7, #ARGV, 3 do
  local member, state, to = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('HSETNX', KEYS[3], member, state) == 1 then
    added = added + 1
    if state == 'expired' or state == 'failed' then
      redis.call('HINCRBY', KEYS[2], state, 1)
    elseif state == 'live' then
      live[#live + 1] = member
      if ARGV[3] ~= '' then
        queued = queued + 1
        redis.call('ZADD', KEYS[4], ARGV[3], ARGV[2] .. ' ' .. member)
      else
        redis.call('HSET', KEYS[3], member, 'sent')
        sent = sent + 1
      end
    else
      queued = queued + 1
      local fields = { 'ch', state, 'to', to,
        'rcpt', member, 'd', 'ntf~' .. member .. '~' .. ARGV[2] .. '~' .. state }
      for _, f in ipairs(common) do
        fields[#fields + 1] = f
      end
      redis.call('XADD', KEYS[5], '*', unpack(fields))
      jobs = jobs + 1
    end
  end
end
redis.call('HINCRBY', KEYS[2], 'expansion', added)
redis.call('HINCRBY', KEYS[2], 'queued', queued)
redis.call('HINCRBY', KEYS[2], 'sent', sent)
redis.call('HSET', KEYS[2], 'cursor', ARGV[4])
if jobs > 0 and ARGV[5] == '1' then
  redis.call('SPUBLISH', KEYS[5] .. ':wake', '')
end
return live

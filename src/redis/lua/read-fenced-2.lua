--[[
  Fenced read of one of a partition's streams (the funnel, or the outbox): entries move into
  our pending list only while the partition's lease holds our value. A paused or partitioned
  former owner therefore cannot take entries the new owner would never see (DESIGN §4);
  waiting for new entries is a plain XREAD BLOCK, which changes nothing in the consumer group.

  Input:
    KEYS[1] partition lease     thr:{p<n>}:lease
    KEYS[2] stream              thr:{p<n>}:funnel or thr:{p<n>}:outbox
    ARGV[1] expected lease value "<node>:<token>"
    ARGV[2] consumer group
    ARGV[3] consumer name (the node id)
    ARGV[4] count
    ARGV[5] '>' (new entries), or an id: our pending entries after it ('0' for all)

  Output: -1 FENCED (redis/codes.ts) when the lease is not ours (nothing read), else { entries, last id }
    entries  { {id, {field, value, ...}}, ... } as XREADGROUP returns them (fields false
             for a pending entry trimmed away)
    last id  when nothing was read, the stream's newest entry id ('0-0' if empty), for an
             XREAD BLOCK that wakes on anything newer; '' otherwise
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end

local reply = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', ARGV[4],
  'STREAMS', KEYS[2], ARGV[5])
local entries = {}
if reply then
  entries = reply[1][2]
end
if #entries > 0 then
  return { entries, '' }
end

local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if newest[1] then
  return { entries, newest[1][1] }
end
return { entries, '0-0' }

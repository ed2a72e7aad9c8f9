--[[
  Where a member is in each of their rooms of one partition, in one call (a member's list and
  the WebSocket welcome ask every partition once, not every room). The room keys are built
  from ARGV[2]; they share KEYS[1]'s slot ({p<n>}), so this runs on a Redis Cluster too.

  Input:
    KEYS[1] room activity  thr:{p<n>}:active (zset: room → last commit or creation, ms)
    ARGV[1] member id
    ARGV[2] room key prefix of the partition: thr:{p<n>}:room:
    ARGV[3..] room ids (of this partition)

  Output: for each room, three values in a flat list: its last activity (ms; false when the
  room is not in the index: deleted, or created before it existed), its seq, the member's
  read marker (0 when none)
]]
local out = {}
for i = 3, #ARGV do
  local room = ARGV[i]
  out[#out + 1] = redis.call('ZSCORE', KEYS[1], room)
  out[#out + 1] = tonumber(redis.call('GET', ARGV[2] .. room .. ':seq') or '0')
  out[#out + 1] = tonumber(redis.call('HGET', ARGV[2] .. room .. ':reads', ARGV[1]) or '0')
end
return out

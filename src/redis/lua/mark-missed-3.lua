--[[
  Keeps a room's set of members who want the room messages they miss while offline (the
  member setting `missed`), and its gate: the room hash field `missed`, the set's size,
  absent when empty (commit-batch-n.lua then needs the missed planner's plan only in rooms
  that have such members). Only a member of the room is added, so a join racing a leave
  cannot leave a non-member in the set.

  Input:
    KEYS[1] room hash      thr:{p<n>}:room:<r>
    KEYS[2] room members   thr:{p<n>}:room:<r>:members
    KEYS[3] missed set     thr:{p<n>}:room:<r>:missed
    ARGV[1] member id
    ARGV[2] "1": add (if a member), "0": remove

  Output: the set's size after (0 when the room does not exist)
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if ARGV[2] == '1' and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  redis.call('SADD', KEYS[3], ARGV[1])
else
  redis.call('SREM', KEYS[3], ARGV[1])
end
local n = redis.call('SCARD', KEYS[3])
if n > 0 then
  redis.call('HSET', KEYS[1], 'missed', n)
else
  redis.call('HDEL', KEYS[1], 'missed')
end
return n

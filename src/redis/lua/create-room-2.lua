--[[
  The last step of creating a room: its hash, all fields at once, unless the room exists.
  The steps before it (claiming the room's numbers, listing it in thr:rooms) touch other
  slots and are safe to repeat, so a create that failed half-way is finished by trying again.

  Input:
    KEYS[1] room hash      thr:{p<n>}:room:<r>
    KEYS[2] room activity  thr:{p<n>}:active (the room enters it at its creation time)
    ARGV[1] room id
    ARGV[2] creation time, ms
    ARGV[3..] field, value, ...

  Output (redis/codes.ts): 1 OK created; 2 ALREADY the room exists, nothing written
]]
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 2
end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1

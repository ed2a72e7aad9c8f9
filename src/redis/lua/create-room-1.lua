--[[
  The last step of creating a room: its hash, all fields at once, unless the room exists.
  The steps before it (claiming the room's numbers, listing it in thr:rooms) touch other
  slots and are safe to repeat, so a create that failed half-way is finished by trying again.

  Input:
    KEYS[1] room hash  thr:{p<n>}:room:<r>
    ARGV    field, value, ...

  Output (redis/codes.ts): 1 OK created; 2 ALREADY the room exists, nothing written
]]
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 2
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1

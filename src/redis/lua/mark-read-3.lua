--[[
  Moves a member's read marker forward, never past the room's seq, and tells the room's
  subscribers (a `read` frame on its live channel).

  Input:
    KEYS[1] read markers   thr:{p<n>}:room:<r>:reads
    KEYS[2] room seq       thr:{p<n>}:room:<r>:seq
    KEYS[3] room members   thr:{p<n>}:room:<r>:members
    ARGV[1] member id
    ARGV[2] seq read up to
    ARGV[3] live pub/sub channel of the room
    ARGV[4] room id

  Output: { code, marker } with code (redis/codes.ts)
     1 OK moved (marker: the new one)
     2 ALREADY at or past it (marker: the current one), nothing written
    -3 NOT_MEMBER the member is not in the room, nothing written
]]
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 0 then
  return { -3, 0 }
end
local target = math.min(tonumber(ARGV[2]), tonumber(redis.call('GET', KEYS[2]) or '0'))
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if target <= current then
  return { 2, current }
end
redis.call('HSET', KEYS[1], ARGV[1], target)
-- Built by hand: cjson would order the fields at random, and `type` must come first.
redis.call('PUBLISH', ARGV[3], '{"type":"read","room":' .. cjson.encode(ARGV[4]) ..
  ',"member":' .. cjson.encode(ARGV[1]) .. ',"seq":' .. target .. '}')
return { 1, target }

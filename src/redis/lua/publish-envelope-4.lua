--[[
  Ingress: accept one envelope into its room's funnel partition, atomically with the
  room and membership checks, so a refused message never enters the funnel.

  Input:
    KEYS[1] room hash          thr:{p<n>}:room:<r>
    KEYS[2] room members set   thr:{p<n>}:room:<r>:members
    KEYS[3] funnel stream      thr:{p<n>}:funnel
    ARGV[1] member id that must belong to the room, or "" (services, admin)
    ARGV[2] envelope JSON
    ARGV[3] funnel length limit (0 = none): beyond it ingress is refused until the owner catches up
    ARGV[4] longest relayed text, in characters, a room with phone numbers takes (0 = no limit)
    ARGV[5] the relayed text's length in characters: the body and its "<sender>: " prefix
    ARGV[6] "1" when the prefix is the room's name (a service's message): its length is added
    ARGV[7] "1" on a Redis Cluster: SPUBLISH to KEYS[3] .. ":wake" after adding the entry
            (what the partition's owner waits on there, in place of an XREAD BLOCK)

  Output: the funnel entry id, or { 2 ALREADY, seq }: the envelope id was committed before
  (a replay), nothing added; or (redis/codes.ts)
    -2 NO_ROOM the room does not exist
    -3 NOT_MEMBER the sender is not a member
    -4 FUNNEL_FULL the funnel partition is full
    -5 TOO_LONG the body is too long for a room with phone numbers (SMS rooms)
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -2
end
local seen = redis.call('GET', KEYS[4])
if seen then
  return { 2, tonumber(seen) }
end
if ARGV[1] ~= '' and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then
  return -3
end
local smsLimit = tonumber(ARGV[4] or '0')
if smsLimit > 0 then
  local length = tonumber(ARGV[5] or '0')
  if ARGV[6] == '1' then
    local name = redis.call('HGET', KEYS[1], 'name') or string.match(KEYS[1], ':room:(.*)$') or ''
    -- Characters, not bytes: count the bytes that start a UTF-8 sequence.
    local _, chars = string.gsub(name, '[^\128-\191]', '')
    length = length + chars
  end
  if length > smsLimit then
    local numbers = redis.call('HGET', KEYS[1], 'numbers')
    if numbers and numbers ~= '[]' then
      return -5
    end
  end
end
local limit = tonumber(ARGV[3])
if limit > 0 and redis.call('XLEN', KEYS[3]) >= limit then
  return -4
end
local id = redis.call('XADD', KEYS[3], '*', 'e', ARGV[2])
if ARGV[7] == '1' then
  redis.call('SPUBLISH', KEYS[3] .. ':wake', '')
end
return id

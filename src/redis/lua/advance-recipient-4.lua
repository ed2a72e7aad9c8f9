--[[
  Moves one recipient of a notification on, if it is still where the caller saw it (so a
  late or repeated report changes nothing): to a final state (delivered, sent, failed,
  expired: counted, and no longer queued), or to the next channel of its fallback (an outbox
  job). Unfenced: a `received` answer arrives on whichever node the WebSocket is.

  Input:
    KEYS[1] notification  thr:{p<n>}:ntf:<id> (hash)
    KEYS[2] recipients    thr:{p<n>}:ntf:<id>:to
    KEYS[3] waiting set   thr:{p<n>}:ntf:waiting
    KEYS[4] outbox stream thr:{p<n>}:outbox
    ARGV[1] notification id
    ARGV[2] member
    ARGV[3] the state the caller saw (live, or the channel whose job reported)
    ARGV[4] the new state: delivered, sent, failed, expired, or a channel name
    ARGV[5] "1" on a Redis Cluster: SPUBLISH to KEYS[4] .. ":wake" after adding a job
    ARGV[6] with a channel: JSON array of the job's fields, else ""

  Output (redis/codes.ts): 1 OK moved, -9 STALE not in the state the caller saw
]]
if redis.call('HGET', KEYS[2], ARGV[2]) ~= ARGV[3] then
  return -9
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
redis.call('ZREM', KEYS[3], ARGV[1] .. ' ' .. ARGV[2])
if ARGV[6] ~= '' then
  redis.call('XADD', KEYS[4], '*', unpack(cjson.decode(ARGV[6])))
  if ARGV[5] == '1' then
    redis.call('SPUBLISH', KEYS[4] .. ':wake', '')
  end
  return 1
end
redis.call('HINCRBY', KEYS[1], 'queued', -1)
redis.call('HINCRBY', KEYS[1], ARGV[4], 1)
return 1

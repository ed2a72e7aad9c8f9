--[[
  Cancels a notification, or changes its priority, while that still applies: a cancel until
  its dispatch starts; a new priority until it is done (while it dispatches, the recipients
  not reached yet get the new one).

  Input:
    KEYS[1] notification      thr:{p<n>}:ntf:<id> (hash)
    KEYS[2..4] due sets       thr:{p<n>}:ntf:due:high, …:normal, …:low
    ARGV[1] "cancel", or the new priority: high, normal or low
    ARGV[2] the notification id
    ARGV[3] now, ms since epoch

  Output (redis/codes.ts): 1 OK changed, 2 ALREADY (cancelled before, or that priority
  already), 0 NONE no such notification, -12 CLOSED too late (its status is returned too)
]]
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return { 0 }
end
local waiting = status == 'scheduled' or status == 'queued'
local sets = { high = KEYS[2], normal = KEYS[3], low = KEYS[4] }
local current = redis.call('HGET', KEYS[1], 'priority')
if ARGV[1] == 'cancel' then
  if status == 'cancelled' then
    return { 2, status }
  end
  if not waiting then
    return { -12, status }
  end
  redis.call('ZREM', sets[current], ARGV[2])
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'cancelledAt', ARGV[3])
  return { 1, 'cancelled' }
end
if not (waiting or status == 'dispatching') then
  return { -12, status }
end
if current == ARGV[1] then
  return { 2, status }
end
if waiting then
  local at = redis.call('ZSCORE', sets[current], ARGV[2])
  redis.call('ZREM', sets[current], ARGV[2])
  redis.call('ZADD', sets[ARGV[1]], at, ARGV[2])
end
redis.call('HSET', KEYS[1], 'priority', ARGV[1])
return { 1, status }

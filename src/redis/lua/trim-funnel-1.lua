--[[
  Trim a funnel partition below the oldest entry that is not yet acknowledged, and report
  the consumer group's backlog. Atomic, so an entry delivered between the two looks
  cannot be trimmed while still pending.

  Input:
    KEYS[1] funnel stream  thr:{p<n>}:funnel
    ARGV[1] consumer group

  Output: { entries trimmed, pending (read, not acknowledged), lag (not read yet, -1 unknown) }
]]
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
local lag = -1
local lastDelivered = '0-0'
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  if info['name'] == ARGV[1] then
    lastDelivered = info['last-delivered-id']
    if type(info['lag']) == 'number' then lag = info['lag'] end
  end
end
local minId = lastDelivered
if pending[1] > 0 then minId = pending[2] end
local trimmed = redis.call('XTRIM', KEYS[1], 'MINID', minId)
return { trimmed, pending[1], lag }

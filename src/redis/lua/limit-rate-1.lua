--[[
  One request against a client's rate limit (GCRA, the generic cell rate algorithm): a
  client may send `burst` requests at once, then one every `interval` ms. The state is one
  number, the theoretical arrival time (TAT), so every node shares the same limit. Time is
  Redis's own, so nodes with skewed clocks still agree.

  Input:
    KEYS[1] limit     thr:rl:<member>
    ARGV[1] interval  ms between requests at the sustained rate (1000 / rate; may be fractional)
    ARGV[2] burst     requests allowed at once (≥ 1)

  Output: {1, 0} allowed, or {0, retryAfterMs} refused (nothing recorded)
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = (tonumber(ARGV[2]) - 1) * interval

local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local allowAt = tat - tolerance
if now < allowAt then
  return {0, math.ceil(allowAt - now)}
end
local nextTat = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', nextTat), 'PX', math.ceil(nextTat - now))
return {1, 0}

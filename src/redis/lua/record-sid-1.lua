--[[
  Record the MessageSid Twilio gave a delivery, unfenced: a send that succeeded must leave its
  sid for the partition's next owner even when this node's lease is gone, so the text is not
  sent again. Never recreates a delivery hash that expired (it would live without a ttl).

  Input:
    KEYS[1] delivery hash  thr:{p<n>}:msg:<envelope id> or thr:{p<n>}:reply:<MessageSid>
    ARGV[1] delivery field prefix (sms:<E.164>, receipt:<E.164>, reply:<E.164>)
    ARGV[2] MessageSid

  Output: 1 recorded, 0 the hash does not exist
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1] .. ':sid', ARGV[2])
return 1

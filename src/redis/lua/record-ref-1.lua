--[[
  Record the receiver's reference for a delivery (Twilio's MessageSid), unfenced: a send that
  succeeded must leave it for the partition's next owner even when this node's lease is gone,
  so it is not sent again. Never recreates a delivery hash that expired (it would live
  without a ttl).

  Input:
    KEYS[1] delivery hash  thr:{p<n>}:msg:<envelope id> or thr:{p<n>}:reply:<MessageSid>
    ARGV[1] delivery field prefix (<channel>:<member>, receipt:<member>, reply:<member>)
    ARGV[2] the reference

  Output (redis/codes.ts): 1 OK recorded, 0 NONE the hash does not exist
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1] .. ':ref', ARGV[2])
return 1

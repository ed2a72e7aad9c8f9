--[[
  Finish with one outbox job, fenced like the commit: only while the partition's lease
  still holds our value. Optionally schedules a retry first, so the job is never lost
  between being acknowledged and being tried again.

  Input:
    KEYS[1] partition lease  thr:{p<n>}:lease
    KEYS[2] outbox stream    thr:{p<n>}:outbox
    KEYS[3] retry set        thr:{p<n>}:outbox:retry
    ARGV[1] expected lease value "<node>:<token>"
    ARGV[2] outbox entry id
    ARGV[3] consumer group
    ARGV[4] retry time, ms since epoch, or "" for no retry
    ARGV[5] the job to retry: JSON array of its stream fields [name, value, ...]

  Output (redis/codes.ts): 1 OK settled, -1 FENCED (nothing changed; the partition's new
  owner has the job)
]]
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return -1
end
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5])
end
redis.call('XACK', KEYS[2], ARGV[3], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
return 1

import type { Redis } from 'ioredis';
import { describe, expect, it, onTestFinished } from 'vitest';
import { eventually } from '../helpers/eventually.ts';
import { MemberSettingsStore } from '../../src/delivery/member-settings.ts';
import type { Ingress } from '../../src/ingress/ingress.ts';
import { SmsInbound } from '../../src/ingress/sms-inbound.ts';
import { createLogger } from '../../src/log.ts';
import { Metrics } from '../../src/metrics/metrics.ts';
import { Keys } from '../../src/redis/keys.ts';
import { defineScripts } from '../../src/redis/scripts.ts';
import { RedisRoomsStore } from '../../src/rooms/store.ts';
import { deleteKeys, uniquePrefix, useRedis } from '../helpers/redis.ts';

const redis = defineScripts(useRedis());

/** `redis`, whose first XADD never answers: the node died right before the reply was queued. */
function crashingAtFirstXadd(): Redis {
  let crashed = false;
  return new Proxy(redis, {
    get(target, prop) {
      if (prop === 'xadd' && !crashed) {
        crashed = true;
        return () => new Promise(() => {});
      }
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('SmsInbound', () => {
  it("a keyword whose handler died before its reply was queued is acted on and answered at Twilio's retry", async () => {
    const keys = new Keys(uniquePrefix('sms-inbound-crash'), 2);
    onTestFinished(() => deleteKeys(redis, keys.prefix).then(() => {}));
    const rooms = new RedisRoomsStore(redis, keys);
    const members = new MemberSettingsStore(redis, keys);
    const [room, ann] = ['+15557000001', '+15557000002'];
    await rooms.create({ id: 'porch', name: 'Porch', numbers: [room] });
    await rooms.addMember('porch', `phone:${ann}`);
    const inbound = (r: Redis) =>
      new SmsInbound(
        r,
        keys,
        rooms,
        members,
        { submit: async () => {} } as unknown as Ingress,
        new Metrics(),
        { dedupeTtlMs: 3_600_000, claimMs: 200 },
        createLogger('silent'),
      );
    const sms = { messageSid: 'SMcrash1', from: ann, to: room, body: 'CONFIRM OFF', media: [] };

    void inbound(crashingAtFirstXadd()).handle(sms);
    await eventually(
      'the keyword acted on',
      () => members.get(`phone:${ann}`),
      (s) => s.confirmations === false,
    );
    // Twilio retries once the claim has run out; the retry acts and answers.
    await eventually(
      'the claim to run out',
      () => redis.exists(keys.twilioSeen(sms.messageSid)),
      (n) => n === 0,
    );
    expect(await inbound(redis).handle(sms)).toBe('keyword');
    const outbox = await redis.xrange(keys.outbox(keys.partitionOf('porch')), '-', '+');
    expect(outbox.map(([, f]) => f[f.indexOf('body') + 1])).toEqual([
      'Confirmations off. Text CONFIRM ON to get them again.',
    ]);
    // Handled now: a further retry is a duplicate.
    expect(await inbound(redis).handle(sms)).toBe('duplicate');
  });
});

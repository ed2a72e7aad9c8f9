/**
 * SMS outbox: rooms with a number and phone members each; one message per room from a
 * service makes one outbox job per member. Jobs/s = jobs / time from the first publish until
 * the Twilio stand-in accepted them all, with the per-number rate limiter lifted.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { forkBench } from '../lib/processes.ts';
import { round } from '../lib/proc-stats.ts';
import { now } from '../lib/stamp.ts';
import { PUBLIC_URL, type StandinOptions } from '../../test/twilio/standin.ts';
import { freePort } from '../../src/redis/embedded.ts';
import { ThresholdCluster } from '../systems/threshold.ts';
import { roomIds } from './rooms.ts';

export interface SmsWorkload {
  rooms: number;
  membersPerRoom: number;
  timeoutMs: number;
}

export interface SmsRun {
  jobs: number;
  seconds: number;
  jobsPerSecond: number;
}

/** The limiter lifted: the highest per-number rate and burst the settings allow. */
const LIFTED = {
  THRESHOLD_SMS_RATE_PER_SECOND: '1000',
  THRESHOLD_SMS_BURST: '10000',
  THRESHOLD_SMS_MAX_IN_FLIGHT: '256',
  THRESHOLD_SMS_READ_BATCH: '1000',
  THRESHOLD_SMS_MAX_QUEUED_PER_NUMBER: '100000',
};

/** The stand-in's credentials: fixed, so the node can start while the stand-in does. */
const ACCOUNT_SID = `AC${'b'.repeat(32)}`;
const AUTH_TOKEN = 'bench-twilio-auth-token';

export async function runSms(w: SmsWorkload): Promise<SmsRun> {
  const port = await freePort();
  const standin = forkBench('twilio stand-in', 'clients/standin.ts', 'client');
  const [cluster] = await Promise.all([
    ThresholdCluster.start(1, {
      TWILIO_ACCOUNT_SID: ACCOUNT_SID,
      TWILIO_AUTH_TOKEN: AUTH_TOKEN,
      THRESHOLD_TWILIO_API_URL: `http://127.0.0.1:${port}`,
      THRESHOLD_PUBLIC_URL: PUBLIC_URL,
      ...LIFTED,
    }),
    standin.call('start', {
      port,
      accountSid: ACCOUNT_SID,
      authToken: AUTH_TOKEN,
    } satisfies StandinOptions),
  ]);
  try {
    const rooms = roomIds(w.rooms, 'sms');
    const number = (i: number) => `+1555${String(i).padStart(7, '0')}`;
    await cluster.createRooms(rooms, (i) => [number(i)]);
    await cluster.adminAll(
      rooms.flatMap((room, i) =>
        Array.from({ length: w.membersPerRoom }, (_, m) => ({
          method: 'PUT',
          path: `/v1/rooms/${room}/members/phone:${number(1_000_000 + i * w.membersPerRoom + m)}`,
        })),
      ),
    );
    const jobs = w.rooms * w.membersPerRoom;
    const start = now();
    await cluster.adminAll(
      rooms.map((room) => ({
        method: 'POST',
        path: `/v1/rooms/${room}/messages`,
        body: { body: 'bench: outbox drain' },
      })),
    );
    for (;;) {
      const accepted = await standin.call<number>('accepted');
      if (accepted >= jobs) break;
      if (now() - start > w.timeoutMs)
        throw new Error(`the stand-in accepted ${accepted} of ${jobs} texts in ${w.timeoutMs} ms`);
      await sleep(50);
    }
    const seconds = (now() - start) / 1000;
    return { jobs, seconds: round(seconds, 2), jobsPerSecond: round(jobs / seconds) };
  } finally {
    await cluster.stop();
    await standin.stop();
  }
}

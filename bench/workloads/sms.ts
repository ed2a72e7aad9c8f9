/**
 * SMS outbox: rooms with a number and phone members each; one message per room from a
 * service makes one outbox job per member. Jobs/s = jobs / time from the first publish until
 * the Twilio stand-in accepted them all, with the per-number rate limiter lifted.
 */
import { forkBench } from '../lib/processes.ts';
import { round } from '../lib/proc-stats.ts';
import { now } from '../lib/stamp.ts';
import { PUBLIC_URL } from '../../test/twilio/standin.ts';
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

export async function runSms(w: SmsWorkload): Promise<SmsRun> {
  const standin = forkBench('twilio stand-in', 'clients/standin.ts', 'client');
  const twilio = await standin.call<{ url: string; accountSid: string; authToken: string }>(
    'start',
  );
  const cluster = await ThresholdCluster.start(1, {
    TWILIO_ACCOUNT_SID: twilio.accountSid,
    TWILIO_AUTH_TOKEN: twilio.authToken,
    THRESHOLD_TWILIO_API_URL: twilio.url,
    THRESHOLD_PUBLIC_URL: PUBLIC_URL,
    ...LIFTED,
  });
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
      await new Promise((r) => setTimeout(r, 50));
    }
    const seconds = (now() - start) / 1000;
    return { jobs, seconds: round(seconds, 2), jobsPerSecond: round(jobs / seconds) };
  } finally {
    await cluster.stop();
    await standin.stop();
  }
}

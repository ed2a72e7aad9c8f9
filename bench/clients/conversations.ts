/**
 * Load generator for the conversations workload (Threshold only): HTTP publishes open-loop at
 * a steady rate into a spread of rooms while members list their rooms (`GET /v1/me/rooms`, a
 * first page and the next with `after`), open the newest (`GET …/messages?before=`) and mark
 * it read (`PUT …/read`), each on a schedule of its own; one member's lists with nothing else
 * running; and closed-loop `?wait=1` publishes
 * into one room, for the commit cost. Latencies are service times: each member waits for one
 * reply before its next request.
 */
import { Agent, request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { encode, newHistogram, recordMs, type Histogram } from '../lib/histogram.ts';
import { serve } from '../lib/processes.ts';
import { anyOf, body, now, openLoop } from '../lib/stamp.ts';
import { pool } from '../../test/helpers/pool.ts';

export interface Reader {
  member: string;
  token: string;
  /** One cycle (list, next page, latest messages, read marker) every this many ms. */
  cycleMs: number;
  /** Its figures are the member-of-many-rooms ones (the others are pooled apart). */
  heavy: boolean;
}

export interface FlowParams {
  url: string;
  adminToken: string;
  /** Where the messages go, one at random each. */
  rooms: string[];
  rate: number;
  readers: Reader[];
  pageSize: number;
  /** now() of the first send and of every reader's first cycle (staggered after it). */
  start: number;
  warmupMs: number;
  measureMs: number;
}

/** Encoded histograms (ms) of the requests started inside the measured window. */
export interface FlowHistograms {
  /** The heavy member's first page, and its next page (`after`). */
  list: string;
  listAfter: string;
  /** The other readers' pages, both kinds. */
  listOthers: string;
  /** `GET /v1/rooms/:room/messages?before=&limit=…` of the newest room, every reader. */
  latest: string;
  /** `PUT /v1/rooms/:room/read`, every reader. */
  read: string;
}

export interface FlowResult {
  /** Publishes sent and answered 202 (whole run, warm-up included). */
  sent: number;
  accepted: number;
  failed: number;
  /** How far the publisher fell behind its schedule at worst, ms. */
  maxLagMs: number;
  /** The heavy member's cycles started inside the measured window. */
  heavyCycles: number;
  /** Reader requests answered other than 200, or with a page not as asked. */
  errors: number;
  firstError: string | undefined;
  histograms: FlowHistograms;
}

export interface CommitParams {
  url: string;
  adminToken: string;
  room: string;
  count: number;
  concurrency: number;
}

export interface CommitResult {
  committed: number;
  /** Answered 202 `pending` (not committed within the wait) or an error. */
  failed: number;
  seconds: number;
  histogram: string;
}

const agent = new Agent({ keepAlive: true, maxSockets: 64 });
/** The publisher's own sockets: a publish never waits behind a reader's request. */
const publishAgent = new Agent({ keepAlive: true, maxSockets: 64 });

function call(
  via: Agent,
  method: string,
  url: string,
  token: string,
  payload?: unknown,
): Promise<{ status: number; text: string }> {
  const data = payload === undefined ? undefined : JSON.stringify(payload);
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        agent: via,
        headers: {
          authorization: `Bearer ${token}`,
          ...(data === undefined
            ? {}
            : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) }),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.once('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.once('error', reject);
    req.end(data);
  });
}

interface Listed {
  rooms: { id: string; seq: number; unread: number }[];
  next: string | null;
}

serve({
  async flow(p: FlowParams): Promise<FlowResult> {
    const from = p.start + p.warmupMs;
    const to = from + p.measureMs;
    const h: Record<keyof FlowHistograms, Histogram> = {
      list: newHistogram(),
      listAfter: newHistogram(),
      listOthers: newHistogram(),
      latest: newHistogram(),
      read: newHistogram(),
    };
    let errors = 0;
    let firstError: string | undefined;
    const fail = (what: string) => {
      errors++;
      firstError ??= what;
    };

    // Publisher: open loop, each send on its schedule whether or not earlier ones are answered.
    const publishing = (async () => {
      const total = Math.floor(((to - p.start) / 1000) * p.rate);
      let accepted = 0;
      let failed = 0;
      const inFlight: Promise<void>[] = [];
      const { sent, maxLagMs } = await openLoop(p.start, p.rate, total, (at) => {
        const room = anyOf(p.rooms);
        inFlight.push(
          call(publishAgent, 'POST', `${p.url}/v1/rooms/${room}/messages`, p.adminToken, {
            body: body(at),
          }).then(
            (r) => void (r.status === 202 ? accepted++ : failed++),
            () => void failed++,
          ),
        );
      });
      await Promise.all(inFlight);
      return { sent, accepted, failed, maxLagMs };
    })();

    let heavyCycles = 0;
    const reader = async (r: Reader, offset: number) => {
      const get = async (path: string): Promise<unknown> => {
        const res = await call(agent, 'GET', `${p.url}${path}`, r.token);
        if (res.status !== 200) {
          fail(`${r.member} GET ${path}: ${res.status} ${res.text.slice(0, 200)}`);
          return undefined;
        }
        return JSON.parse(res.text);
      };
      /** Runs `f`, recording its time in `hist` when it started inside the window. */
      const timed = async <T>(hist: Histogram, f: () => Promise<T>): Promise<T> => {
        const t = now();
        const out = await f();
        if (t >= from && t < to) recordMs(hist, now() - t);
        return out;
      };
      const size = `limit=${p.pageSize}`;
      for (let k = 0; ; k++) {
        const due = p.start + offset + k * r.cycleMs;
        // A member behind its schedule starts its next cycle at once, but none after the window.
        if (due >= to || now() >= to) return;
        if (due > now()) await sleep(due - now());
        const measured = now() >= from;
        const first = (await timed(r.heavy ? h.list : h.listOthers, () =>
          get(`/v1/me/rooms?${size}`),
        )) as Listed | undefined;
        if (!first) continue;
        if (first.rooms.length !== p.pageSize || !first.next) {
          fail(`${r.member}: a first page of ${first.rooms.length} rooms, next ${first.next}`);
          continue;
        }
        const cursor = encodeURIComponent(first.next);
        const second = (await timed(r.heavy ? h.listAfter : h.listOthers, () =>
          get(`/v1/me/rooms?${size}&after=${cursor}`),
        )) as Listed | undefined;
        if (second) {
          const seen = new Set(first.rooms.map((x) => x.id));
          if (second.rooms.length === 0 || second.rooms.some((x) => seen.has(x.id)))
            fail(`${r.member}: the next page repeats the first or is empty`);
        }
        const top = first.rooms[0] as Listed['rooms'][number];
        await timed(h.latest, () =>
          get(`/v1/rooms/${top.id}/messages?before=&limit=${p.pageSize}`),
        );
        const marked = await timed(h.read, () =>
          call(agent, 'PUT', `${p.url}/v1/rooms/${top.id}/read`, r.token, { seq: top.seq }),
        );
        if (marked.status !== 200)
          fail(`${r.member} PUT read: ${marked.status} ${marked.text.slice(0, 200)}`);
        if (r.heavy && measured) heavyCycles++;
      }
    };
    const reading = Promise.all(
      p.readers.map((r, i) => reader(r, Math.round((i * r.cycleMs) / p.readers.length))),
    );
    const [sent] = await Promise.all([publishing, reading]);
    return {
      ...sent,
      heavyCycles,
      errors,
      firstError,
      histograms: {
        list: encode(h.list),
        listAfter: encode(h.listAfter),
        listOthers: encode(h.listOthers),
        latest: encode(h.latest),
        read: encode(h.read),
      },
    };
  },

  /** `count` requests for the member's first page, one after the other (nothing else running). */
  async lists(p: { url: string; token: string; pageSize: number; count: number }) {
    const histogram = newHistogram();
    for (let i = 0; i < p.count; i++) {
      const t = now();
      const r = await call(agent, 'GET', `${p.url}/v1/me/rooms?limit=${p.pageSize}`, p.token);
      if (r.status !== 200)
        throw new Error(`GET /v1/me/rooms: ${r.status} ${r.text.slice(0, 200)}`);
      recordMs(histogram, now() - t);
    }
    return encode(histogram);
  },

  /** `count` publishes with `?wait=1` into one room, `concurrency` at a time. */
  async commits(p: CommitParams): Promise<CommitResult> {
    const histogram = newHistogram();
    let committed = 0;
    let failed = 0;
    const start = now();
    await pool(p.count, p.concurrency, async () => {
      const t = now();
      const r = await call(
        publishAgent,
        'POST',
        `${p.url}/v1/rooms/${p.room}/messages?wait=1`,
        p.adminToken,
        { body: body(t) },
      ).catch(() => ({ status: 0, text: '' }));
      if (r.status === 201) {
        committed++;
        recordMs(histogram, now() - t);
      } else failed++;
    });
    return {
      committed,
      failed,
      seconds: (now() - start) / 1000,
      histogram: encode(histogram),
    };
  },
});

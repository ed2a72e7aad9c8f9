/**
 * Load generator for the ingress workload: `concurrency` keep-alive connections, each posting
 * the next message as soon as the previous one is answered (closed loop: the figure is the
 * throughput the node accepts, and the latency includes waiting behind the other requests).
 */
import { Agent, request } from 'node:http';
import { encode, newHistogram, recordMs } from '../lib/histogram.ts';
import { serve } from '../lib/processes.ts';
import { body, now } from '../lib/stamp.ts';

export interface HttpLoadParams {
  url: string;
  token: string;
  rooms: string[];
  concurrency: number;
  warmupMs: number;
  measureMs: number;
}

function post(agent: Agent, url: string, token: string, payload: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
        },
      },
      (res) => {
        res.resume();
        res.once('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.once('error', reject);
    req.end(payload);
  });
}

serve({
  async run(p: HttpLoadParams) {
    const agent = new Agent({ keepAlive: true, maxSockets: p.concurrency });
    const histogram = newHistogram();
    const from = now() + p.warmupMs;
    const to = from + p.measureMs;
    let accepted = 0;
    let failed = 0;
    let i = 0;
    const worker = async () => {
      while (now() < to) {
        const room = p.rooms[i++ % p.rooms.length] as string;
        const start = now();
        const status = await post(
          agent,
          `${p.url}/v1/rooms/${room}/messages`,
          p.token,
          JSON.stringify({ body: body(start) }),
        ).catch(() => 0);
        if (start < from) continue;
        if (status === 202) {
          accepted++;
          recordMs(histogram, now() - start);
        } else failed++;
      }
    };
    await Promise.all(Array.from({ length: p.concurrency }, worker));
    agent.destroy();
    return { accepted, failed, seconds: p.measureMs / 1000, histogram: encode(histogram) };
  },
});

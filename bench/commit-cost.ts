/**
 * The commit path alone, for back-to-back comparisons of commits: one node on a fresh
 * redis-server, 10,000 rooms; `count` envelopes XADDed straight into the funnel (no ingress,
 * no subscribers), then the CPU the node and redis-server spent per committed message, and
 * what Redis ran per message (INFO commandstats, commands inside scripts included).
 *
 *   npx tsx bench/commit-cost.ts [count]     (default 40,000)
 *
 * Not part of `npm run bench`: its figures are costs, not a comparison with peers. Run it on
 * two checkouts one after the other to see what a change to the commit path bought.
 */
import { Redis } from 'ioredis';
import { ENVELOPE_VERSION, type Envelope } from '../src/funnel/envelope.ts';
import { Keys } from '../src/redis/keys.ts';
import { sample } from './lib/proc-stats.ts';
import { ADMIN_TOKEN, PARTITIONS, ThresholdCluster } from './systems/threshold.ts';

const count = Number(process.argv[2] ?? 40_000);
const ROOMS = 10_000;

const cluster = await ThresholdCluster.start(1);
try {
  const rooms = Array.from({ length: ROOMS }, (_, i) => `room-${i}`);
  await cluster.createRooms(rooms);
  const node = cluster.nodes[0];
  if (!node) throw new Error('no node');
  const redis = new Redis(cluster.redis.url);
  const keys = new Keys('thr:', PARTITIONS);
  const relayed = async () => {
    const res = await fetch(`${node.url}/metrics`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    let sum = 0;
    for (const m of (await res.text()).matchAll(
      /^threshold_messages_relayed_total\{[^}]*\} (\d+)/gm,
    ))
      sum += Number(m[1]);
    return sum;
  };
  await new Promise((resolve) => setTimeout(resolve, 2000));
  await redis.config('RESETSTAT');
  const base = await relayed();
  const processes = cluster.processes;
  const before = processes.map((p) => sample(p.pid)?.cpuSeconds ?? 0);
  const started = Date.now();
  for (let i = 0; i < count; i += 1000) {
    const pipe = redis.pipeline();
    for (let j = i; j < Math.min(count, i + 1000); j++) {
      const room = rooms[(j * 7919) % ROOMS] as string;
      const env: Envelope = {
        v: ENVELOPE_VERSION,
        id: `http:${room}:service:bench:${j}`,
        room,
        source: 'http',
        sender: { kind: 'service', id: 'bench' },
        body: `message ${j} of the commit cost run`,
        kind: 'notification',
        origin: { node: 'elsewhere' },
        receivedAt: Date.now(),
      };
      pipe.xadd(keys.funnel(keys.partitionOf(room)), '*', 'e', JSON.stringify(env));
    }
    await pipe.exec();
  }
  while ((await relayed()) - base < count) await new Promise((r) => setTimeout(r, 50));
  const seconds = (Date.now() - started) / 1000;
  const costs = processes.map((p, i) => {
    const spent = (sample(p.pid)?.cpuSeconds ?? 0) - (before[i] ?? 0);
    return `${p.name} ${((spent * 1e6) / count).toFixed(1)} µs/msg`;
  });
  console.log(
    `${count} commits in ${seconds.toFixed(2)} s (${Math.round(count / seconds)}/s): ${costs.join(', ')}`,
  );
  const stats = await redis.info('commandstats');
  for (const m of stats.matchAll(/^cmdstat_(\w+):calls=(\d+),usec=(\d+)/gm)) {
    const [, name, calls, usec] = m as unknown as [string, string, string, string];
    if (Number(usec) / count >= 0.5)
      console.log(
        `  ${name}: ${(Number(calls) / count).toFixed(2)} calls/msg, ${(Number(usec) / count).toFixed(1)} µs/msg`,
      );
  }
  redis.disconnect();
} finally {
  await cluster.stop();
}

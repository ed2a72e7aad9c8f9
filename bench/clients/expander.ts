/**
 * The expansion workload's child (bench/workloads/expansion.ts): a process of its own per
 * measured run, so its peak RSS (VmHWM) is that run's. `streaming` expands a tag expression
 * with Threshold's code (src/notify/tag-expansion.ts, paged ZRANGE … BYLEX reads);
 * `naive` reads every member of both tags and takes the Set difference.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Cluster, Redis } from 'ioredis';
import { CLUSTER_OPTIONS, type RedisClient, seedUrls } from '../../src/redis/client.ts';
import { Keys } from '../../src/redis/keys.ts';
import { expand } from '../../src/notify/tag-expansion.ts';
import { parseTagExpression } from '../../src/notify/tag-expression.ts';
import { TagStore } from '../../src/notify/tags.ts';
import { serve } from '../lib/processes.ts';

export interface ExpandParams {
  url: string;
  cluster: boolean;
  prefix: string;
  /** `all - muted`: the naive way takes exactly this shape, a tag minus a tag. */
  include: string;
  exclude: string;
  pageSize: number;
  way: 'streaming' | 'naive';
}

export interface ExpandResult {
  recipients: number;
  seconds: number;
  /** RSS once connected, before expanding, and the process's peak (VmHWM), MiB. */
  rssBeforeMiB: number;
  peakRssMiB: number;
}

const kib = (name: string) =>
  Number(
    new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(
      readFileSync('/proc/self/status', 'utf8'),
    )?.[1] ?? 0,
  );
const mib = (k: number) => Math.round((k / 1024) * 10) / 10;

let client: RedisClient | undefined;

serve({
  async connect(p: ExpandParams) {
    client = p.cluster
      ? new Cluster(seedUrls(p.url), CLUSTER_OPTIONS)
      : new Redis(p.url, { lazyConnect: true });
    if (client instanceof Redis) await client.connect();
    await client.ping();
  },

  async expand(p: ExpandParams): Promise<ExpandResult> {
    if (!client) throw new Error('connect first');
    const keys = new Keys(p.prefix, 64);
    // Resets VmHWM to the RSS now (Linux 4.0+), so the peak is the expansion's, not start-up's.
    writeFileSync('/proc/self/clear_refs', '5');
    const rssBefore = kib('VmRSS');
    const start = performance.now();
    let recipients = 0;
    if (p.way === 'streaming') {
      const ast = parseTagExpression(`${p.include} - ${p.exclude}`);
      const store = new TagStore(client, keys);
      // What a dispatcher does with each page: hands it on and lets it go.
      for await (const page of expand(ast, store, { pageSize: p.pageSize }))
        recipients += page.length;
    } else {
      const [all, muted] = await Promise.all([
        client.zrange(keys.tagMembers(p.include), 0, -1),
        client.zrange(keys.tagMembers(p.exclude), 0, -1),
      ]);
      const skip = new Set(muted);
      recipients = all.filter((m) => !skip.has(m)).length;
    }
    const seconds = (performance.now() - start) / 1000;
    return { recipients, seconds, rssBeforeMiB: mib(rssBefore), peakRssMiB: mib(kib('VmHWM')) };
  },
});

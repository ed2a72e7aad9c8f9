/**
 * `npx threshold cluster --nodes 3`, as the README's "A mesh on one machine" section shows
 * it: the command and the curl commands verbatim, on free ports.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { alive, freePortRange, runThreshold } from '../helpers/process.ts';
import { readmeLines, shell, tempDir } from '../helpers/readme.ts';

describe('README: a mesh on one machine', () => {
  it('`npx threshold cluster --nodes 3` starts Redis and three nodes that form one mesh; Ctrl-C stops them all', async () => {
    const lines = readmeLines('## A mesh on one machine');
    expect(lines).toContain('npx threshold cluster --nodes 3');
    const curls = lines.filter((l) => l.startsWith('curl '));
    expect(curls).toHaveLength(2);

    const base = await freePortRange(3);
    const dataDir = await tempDir('cluster');
    // The README's command is `npx threshold cluster --nodes 3`; the port and data directory
    // come from the environment so the test does not take 8080 or write into the checkout.
    const launcher = runThreshold(
      ['cluster', '--nodes', '3'],
      { THRESHOLD_PORT: String(base), THRESHOLD_DATA_DIR: dataDir },
      { ownGroup: true },
    );
    await launcher.waitFor(/Ctrl-C stops everything/, 40_000);
    const out = launcher.output();
    // Progress on stderr, a plain line per step off a terminal; stdout says what runs where.
    const progress = launcher.errors();
    expect(progress).toMatch(/^\[1\/3\] starting a local redis-server$/m);
    expect(progress).toMatch(/^\[2\/3\] starting 3 relay nodes: 3\/3 ready$/m);
    expect(progress).toMatch(/^\[3\/3\] waiting for the partitions to settle: 3\/3 nodes agree$/m);
    const progressLines = out.split('\n').filter((l) => /^\[\d/.test(l));
    expect(progressLines.every((l) => progress.split('\n').includes(l))).toBe(true);
    const pids: number[] = [];
    for (let i = 0; i < 3; i++) {
      const line = new RegExp(
        `node-${i + 1}  http://127\\.0\\.0\\.1:${base + i}  ready \\(pid (\\d+)`,
      ).exec(out);
      expect(line, out).not.toBeNull();
      pids.push(Number(line?.[1]));
    }
    const redisPid = Number(/local redis-server, pid (\d+)/.exec(out)?.[1]);
    // Without THRESHOLD_DATABASE_URL each node has its own accounts, and is told so.
    expect(out).toMatch(/^accounts: no THRESHOLD_DATABASE_URL, so each node has its own/m);
    // A Prometheus config for exactly these nodes, as cluster/prometheus.yml is for compose.
    const scrapeFile = /prometheus --config\.file=(\S+) scrapes every node/.exec(out)?.[1] ?? '';
    const scrape = parse(readFileSync(scrapeFile, 'utf8')) as {
      scrape_configs: { static_configs: { targets: string[] }[] }[];
    };
    expect(scrape.scrape_configs[0]?.static_configs[0]?.targets).toEqual(
      [0, 1, 2].map((i) => `127.0.0.1:${base + i}`),
    );

    const local = (s: string) =>
      s.replace(/localhost:(808\d)/g, (_, p: string) => `127.0.0.1:${base + Number(p) - 8080}`);
    const [clusterCurl, connectCurl] = curls as [string, string];
    // Agreement takes a heartbeat or two after the last node is ready.
    let view = JSON.parse(await shell(local(clusterCurl)));
    for (let i = 0; i < 30 && new Set(view.partitions).size < 3; i++) {
      await new Promise((r) => setTimeout(r, 200));
      view = JSON.parse(await shell(local(clusterCurl)));
    }
    expect(view.nodes.map((n: { id: string }) => n.id)).toEqual(['node-1', 'node-2', 'node-3']);
    expect(new Set(view.partitions)).toEqual(new Set(['node-1', 'node-2', 'node-3']));
    const connect = JSON.parse(await shell(local(connectCurl)));
    const urls = [0, 1, 2].map((i) => `ws://127.0.0.1:${base + i}/v1/ws`);
    expect(urls).toContain(connect.url);

    // Ctrl-C: SIGINT to the terminal's whole foreground process group.
    process.kill(-(launcher.child.pid as number), 'SIGINT');
    const { code } = await launcher.exited;
    // Every node stopped gracefully (released its leases) before Redis went. Checked before
    // the exit code, which is 1 when a node did not stop cleanly: its log says why.
    for (let i = 1; i <= 3; i++) {
      const log = readFileSync(join(dataDir, 'cluster', `node-${i}.log`), 'utf8');
      expect(log, `node-${i}`).toMatch(/"msg":"stopped"/);
      expect(log, `node-${i}`).not.toMatch(/could not release lease|graceful stop failed/);
    }
    expect(code, launcher.output()).toBe(0);
    expect(launcher.output()).toMatch(/^stopped$/m);
    for (const pid of [...pids, redisPid])
      expect(alive(pid), `pid ${pid} still running`).toBe(false);
  }, 60_000);

  it('`threshold cluster --nodes 2 --redis-cluster 3` starts a three-master Redis Cluster and two nodes on it; Ctrl-C stops them all', async () => {
    const base = await freePortRange(2);
    const dataDir = await tempDir('cluster-on-redis-cluster');
    const launcher = runThreshold(
      ['cluster', '--nodes', '2', '--redis-cluster', '3'],
      { THRESHOLD_PORT: String(base), THRESHOLD_DATA_DIR: dataDir },
      { ownGroup: true },
    );
    await launcher.waitFor(/Ctrl-C stops everything/, 60_000);
    const out = launcher.output();
    expect(launcher.errors()).toMatch(
      /^\[1\/3\] starting a local Redis Cluster of 3 masters: creating the cluster/m,
    );
    const masters = [
      ...out.matchAll(/^redis {3}(\S+) \(local Redis Cluster master, pid (\d+)\)$/gm),
    ];
    expect(masters, out).toHaveLength(3);
    const pids = masters.map((m) => Number(m[2]));
    for (let i = 0; i < 2; i++) {
      const line = new RegExp(
        `node-${i + 1}  http://127\\.0\\.0\\.1:${base + i}  ready \\(pid (\\d+)`,
      ).exec(out);
      expect(line, out).not.toBeNull();
      pids.push(Number(line?.[1]));
    }

    const json = { 'content-type': 'application/json' };
    const created = await fetch(`http://127.0.0.1:${base}/v1/rooms`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ id: 'garden', name: 'Garden club' }),
    });
    expect(created.status).toBe(201);
    // Through the other node: a client may talk to any node.
    const published = await fetch(`http://127.0.0.1:${base + 1}/v1/rooms/garden/messages?wait=1`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ body: 'Seedlings are in!' }),
    });
    expect(published.status).toBe(201);
    expect(await published.json()).toMatchObject({ seq: 1, status: 'committed' });

    process.kill(-(launcher.child.pid as number), 'SIGINT');
    const { code } = await launcher.exited;
    for (let i = 1; i <= 2; i++) {
      const log = readFileSync(join(dataDir, 'cluster', `node-${i}.log`), 'utf8');
      expect(log, `node-${i}`).toMatch(/"msg":"stopped"/);
    }
    expect(code, launcher.output()).toBe(0);
    expect(launcher.output()).toMatch(/^stopped$/m);
    for (const pid of pids) expect(alive(pid), `pid ${pid} still running`).toBe(false);
  }, 90_000);
});

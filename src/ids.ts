import { hostname } from 'node:os';
import { randomFillSync } from 'node:crypto';
import { ulid } from 'ulid';

const pool = Buffer.alloc(4096);
let used = pool.length;

/**
 * ulid's default generator looks up the platform's crypto and asks it for one byte per
 * character, 16 calls per id: on the ingress hot path that was most of the cost of taking a
 * message. The same CSPRNG bytes, fetched 4 KiB at a time, cost a fraction of that.
 */
function pooledRandom(): number {
  if (used >= pool.length) {
    randomFillSync(pool);
    used = 0;
  }
  return (pool[used++] as number) / 256;
}

/** A new ULID: time-ordered, 80 random bits. */
export const newUlid = (): string => ulid(undefined, pooledRandom);

/**
 * A node's id when none is configured: `<hostname>-<port>`, stable across restarts, so a
 * restarted node takes its own leases back at once (a random suffix on port 0).
 */
export function defaultNodeId(port: number): string {
  const host = hostname()
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .slice(0, 40);
  return `${host}-${port || newUlid().slice(-8).toLowerCase()}`;
}

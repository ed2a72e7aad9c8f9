import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/**
 * The start of the kernel's ephemeral port range, where every bind to port 0 lands: a node's
 * own redis-server (src/redis/embedded.ts picks its port that way), a test node on port 0, an
 * outgoing connection.
 */
function ephemeralStart(): number {
  try {
    const [start] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/);
    return Number(start) || 32_768;
  } catch {
    return 32_768;
  }
}

const LOWEST = 10_000;
const CEILING = Math.max(LOWEST + 1_000, ephemeralStart());

/**
 * A free loopback port for a test to give a process it starts, below the ephemeral range: a
 * port found by binding port 0 could be handed by the kernel to another port-0 bind before
 * the process binds it (a node's own redis-server took its node's HTTP port that way).
 */
export async function freePort(): Promise<number> {
  for (;;) {
    // A hundred spare above it: freePortRange() takes the ports after it.
    const port = LOWEST + Math.floor(Math.random() * (CEILING - LOWEST - 100));
    if (await portFree(port)) return port;
  }
}

/** True if nothing listens on the loopback port now. */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

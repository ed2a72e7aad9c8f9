import { setTimeout as sleep } from 'node:timers/promises';
import type { ClusterState } from './mesh/cluster-view.ts';

// What `threshold cluster` waits for once its nodes run: each one ready, then one agreed mesh.

const POLL_MS = 200;

/** Resolves once `GET <url>/readyz` answers 200: the node joined the mesh and holds its partitions. */
export async function waitReady(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await fetch(`${url}/readyz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) return;
    await sleep(POLL_MS);
  }
  throw new Error(`${url} not ready after ${timeoutMs / 1000} s`);
}

/**
 * Waits until every node sees the same owner for every partition and holds the leases of
 * exactly the partitions it owns (a heartbeat or two after the last node is ready). Calls
 * `seen` with how many nodes agree so far; false when `timeoutMs` passed first.
 */
export async function waitSettled(
  urls: string[],
  adminToken: string,
  timeoutMs: number,
  seen: (agreeing: number) => void = () => {},
): Promise<boolean> {
  const headers: Record<string, string> = adminToken
    ? { authorization: `Bearer ${adminToken}` }
    : {};
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const views = await Promise.all(
      urls.map((url) =>
        fetch(`${url}/v1/cluster`, { headers }).then(
          async (r) => (r.ok ? ((await r.json()) as ClusterState) : undefined),
          () => undefined,
        ),
      ),
    );
    const first = views[0];
    const agreeing = views.filter((v) => first && v && settledWith(v, first)).length;
    seen(agreeing);
    if (agreeing === urls.length) return true;
    await sleep(POLL_MS);
  }
  return false;
}

/** `view` owns and holds what `reference` says it owns, and sees every partition as it does. */
function settledWith(view: ClusterState, reference: ClusterState): boolean {
  const owners = reference.partitions;
  if (owners.some((o) => o === null)) return false;
  if (view.partitions.join() !== owners.join()) return false;
  const mine = owners.flatMap((o, p) => (o === view.node ? [p] : []));
  return view.held.join() === mine.join();
}

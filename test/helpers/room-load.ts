import { WebSocket } from 'ws';
import { admin, type MeshNode, sleep, type TestMesh } from './mesh.ts';
import { ADMIN_TOKEN } from './node.ts';

/**
 * A steady publish load over many rooms, as a well-behaved HTTP client sends it: each room
 * has one publisher that sends its next message once the previous one was accepted (202),
 * and retries a failed request on another node with the same Idempotency-Key.
 */
export class RoomLoad {
  /** room → envelope ids of the accepted messages, in the order they were accepted. */
  readonly accepted = new Map<string, string[]>();
  /** Envelope id → when its 202 arrived (ms since epoch): the moment the client was told. */
  readonly ackedAt = new Map<string, number>();
  /** Requests that failed (a node died, or answered 503) and were retried elsewhere. */
  retries = 0;
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly mesh: TestMesh,
    readonly rooms: string[],
    private readonly intervalMs = 100,
  ) {}

  get total(): number {
    let n = 0;
    for (const ids of this.accepted.values()) n += ids.length;
    return n;
  }

  start(): void {
    this.running = true;
    this.loops = this.rooms.map((room, i) => this.publisher(room, i));
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  private async publisher(room: string, offset: number): Promise<void> {
    const ids: string[] = [];
    this.accepted.set(room, ids);
    let target = offset;
    for (let n = 0; this.running; n++) {
      while (this.running) {
        // Clients do not know which node died: they find out and retry on the next one.
        const node = this.mesh.started[target % this.mesh.started.length] as MeshNode;
        const status = await publish(node, room, `${room}-${n}`, `message ${n}`).catch(() => 0);
        if (typeof status === 'string') {
          ids.push(status);
          this.ackedAt.set(status, Date.now());
          break;
        }
        if (status !== 0 && status !== 503)
          throw new Error(`publish to ${room} on ${node.id} answered ${status}`);
        this.retries++;
        target++;
        await sleep(50);
      }
      await sleep(this.intervalMs);
    }
  }
}

/** Resolves with the envelope id on 202, or the HTTP status otherwise. */
async function publish(node: MeshNode, room: string, key: string, body: string) {
  const res = await fetch(`${node.url}/v1/rooms/${room}/messages`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${ADMIN_TOKEN}`,
      'content-type': 'application/json',
      'idempotency-key': key,
    },
    body: JSON.stringify({ body }),
    signal: AbortSignal.timeout(5_000),
  });
  if (res.status !== 202) return res.status;
  return ((await res.json()) as { id: string }).id;
}

export interface HistoryReport {
  committed: number;
  /** Accepted (202) but never committed. */
  lost: number;
  /** Ids committed more than once. */
  duplicated: number;
  /** Accepted messages of a room committed in another order than they were accepted. */
  reordered: number;
  /** Missing seqs: per room, seq must run 1, 2, 3… */
  gaps: number;
  /** room → last seq */
  last: Map<string, number>;
  /** Envelope id → the seq it was committed at (the first, if committed twice). */
  seqOf: Map<string, number>;
}

/**
 * Reads every room's history over HTTP, once every accepted message is committed (or the
 * timeout passed), and counts what a user would call a defect.
 */
export async function checkHistories(
  node: MeshNode,
  accepted: Map<string, string[]>,
  timeoutMs = 20_000,
): Promise<HistoryReport> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const report = await readHistories(node, accepted);
    if (report.lost === 0 || Date.now() > deadline) return report;
    await sleep(250);
  }
}

async function readHistories(node: MeshNode, accepted: Map<string, string[]>) {
  const report: HistoryReport = {
    committed: 0,
    lost: 0,
    duplicated: 0,
    reordered: 0,
    gaps: 0,
    last: new Map(),
    seqOf: new Map(),
  };
  for (const [room, ids] of accepted) {
    const messages = await history(node, room);
    const seqOf = new Map<string, number>();
    let expected = 1;
    for (const m of messages) {
      if (m.seq !== expected) report.gaps += Math.max(0, m.seq - expected);
      expected = m.seq + 1;
      if (seqOf.has(m.id)) report.duplicated++;
      else seqOf.set(m.id, m.seq);
    }
    for (const [id, seq] of seqOf) report.seqOf.set(id, seq);
    report.committed += messages.length;
    report.last.set(room, messages.at(-1)?.seq ?? 0);
    let previous = 0;
    for (const id of ids) {
      const seq = seqOf.get(id);
      if (seq === undefined) report.lost++;
      else if (seq < previous) report.reordered++;
      else previous = seq;
    }
  }
  return report;
}

export async function history(node: MeshNode, room: string) {
  const all: { seq: number; id: string }[] = [];
  for (let since = 0; ;) {
    const res = await admin(node, 'GET', `/v1/rooms/${room}/messages?since=${since}&limit=1000`);
    if (res.status !== 200) throw new Error(`history of ${room}: ${res.status}`);
    const page = (await res.json()) as { messages: { seq: number; id: string }[]; last: number };
    all.push(...page.messages);
    if (page.messages.length < 1000) return all;
    since = page.last;
  }
}

/**
 * A WebSocket client subscribed to every room, which does what the README tells clients to
 * do: when its connection drops, it reconnects to another node and subscribes with `since`
 * (the last seq it saw in each room).
 */
export class Watcher {
  /** room → messages received (seq and envelope id), in arrival order, with when each arrived. */
  readonly received = new Map<string, { seq: number; id: string; at: number }[]>();
  /** Frames of type error. */
  readonly errors: unknown[] = [];
  reconnects = 0;
  private ws: WebSocket | undefined;
  private stopped = false;

  constructor(
    private readonly mesh: TestMesh,
    private readonly rooms: string[],
    public node: MeshNode,
  ) {
    for (const room of rooms) this.received.set(room, []);
  }

  async start(): Promise<void> {
    await this.open(this.node);
  }

  stop(): void {
    this.stopped = true;
    this.ws?.terminate();
  }

  /** Seqs received in a room that are not the exact run 1…last. */
  defects(room: string, last: number): { missing: number; repeated: number; outOfOrder: number } {
    const seqs = (this.received.get(room) ?? []).map((r) => r.seq);
    const seen = new Set<number>();
    let repeated = 0;
    let outOfOrder = 0;
    let previous = 0;
    for (const seq of seqs) {
      if (seen.has(seq)) repeated++;
      else if (seq < previous) outOfOrder++;
      seen.add(seq);
      previous = Math.max(previous, seq);
    }
    let missing = 0;
    for (let s = 1; s <= last; s++) if (!seen.has(s)) missing++;
    return { missing, repeated, outOfOrder };
  }

  lastSeq(room: string): number {
    return this.received.get(room)?.at(-1)?.seq ?? 0;
  }

  private open(node: MeshNode): Promise<void> {
    this.node = node;
    const ws = new WebSocket(`${node.wsUrl}?token=${ADMIN_TOKEN}`);
    this.ws = ws;
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as {
        type: string;
        room: string;
        seq: number;
        id: string;
      };
      if (frame.type === 'message')
        this.received.get(frame.room)?.push({ seq: frame.seq, id: frame.id, at: Date.now() });
      else if (frame.type === 'error') this.errors.push(frame);
    });
    ws.on('close', () => {
      if (!this.stopped) void this.reconnect();
    });
    return new Promise((resolve, reject) => {
      ws.once('open', () => {
        for (const room of this.rooms)
          ws.send(JSON.stringify({ type: 'subscribe', room, since: this.lastSeq(room) }));
        resolve();
      });
      ws.once('error', reject);
    });
  }

  private async reconnect(): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      await sleep(100);
      const others = this.mesh.nodes.filter((n) => n !== this.node);
      const next = others[attempt % Math.max(1, others.length)] ?? this.node;
      try {
        await this.open(next);
        this.reconnects++;
        return;
      } catch {
        // That one is gone too: try the next.
      }
    }
  }
}

/** Creates `count` rooms (r0, r1, …) through the first node. */
export async function createRooms(mesh: TestMesh, count: number): Promise<string[]> {
  const rooms = Array.from({ length: count }, (_, i) => `r${i}`);
  for (const id of rooms) {
    const res = await admin(mesh.pick(0), 'POST', '/v1/rooms', { id });
    if (res.status !== 201) throw new Error(`creating room ${id}: ${res.status}`);
  }
  return rooms;
}

export interface ScenarioResult {
  load: RoomLoad;
  watchers: Watcher[];
  report: HistoryReport;
}

/**
 * Runs a steady load over the rooms, with a watcher on every running node, and does
 * `fault` after `beforeMs`; the load goes on `afterMs` after the fault, then stops. Resolves
 * once every accepted message is committed and every watcher has caught up (or timed out:
 * `historyTimeoutMs` bounds the wait for commits where some loss is expected).
 */
export async function underLoad(
  mesh: TestMesh,
  rooms: string[],
  fault: () => Promise<void>,
  { beforeMs = 2_000, afterMs = 3_000, historyTimeoutMs = 20_000 } = {},
): Promise<ScenarioResult> {
  const watchers = mesh.nodes.map((n) => new Watcher(mesh, rooms, n));
  await Promise.all(watchers.map((w) => w.start()));
  const load = new RoomLoad(mesh, rooms);
  // Watchers reconnect until stopped: a failed fault must not leave them running.
  try {
    load.start();
    try {
      await sleep(beforeMs);
      await fault();
      await sleep(afterMs);
    } finally {
      await load.stop();
    }
    const report = await checkHistories(mesh.pick(0), load.accepted, historyTimeoutMs);
    const deadline = Date.now() + 10_000;
    const caughtUp = () =>
      watchers.every((w) => rooms.every((r) => w.lastSeq(r) >= (report.last.get(r) ?? 0)));
    while (!caughtUp() && Date.now() < deadline) await sleep(100);
    return { load, watchers, report };
  } finally {
    for (const w of watchers) w.stop();
  }
}

/** Sum of the watchers' defects over every room: what subscribers missed or saw twice. */
export function watcherDefects(result: ScenarioResult) {
  const total = { missing: 0, repeated: 0, outOfOrder: 0 };
  for (const w of result.watchers) {
    for (const [room, last] of result.report.last) {
      const d = w.defects(room, last);
      total.missing += d.missing;
      total.repeated += d.repeated;
      total.outOfOrder += d.outOfOrder;
    }
  }
  return total;
}

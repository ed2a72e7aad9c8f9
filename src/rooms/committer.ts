import type { ChainableCommander } from 'ioredis';
import { batch, isCluster, onConnectionDrop, type RedisClient, serverOf } from '../redis/client.ts';
import type { Receipt, RoutedReceipt } from '../delivery/receipts.ts';
import { type Envelope, memberIdOf, messageFrameParts, parseEnvelope } from '../funnel/envelope.ts';
import { RELAY_GROUP, type ReplicaWait } from '../funnel/funnel.ts';
import type { Logger } from '../log.ts';
import type { BatchOutcome, BatchProcessor, FunnelEntry } from '../mesh/batch.ts';
import type { Metrics } from '../metrics/metrics.ts';
import { Code } from '../redis/codes.ts';
import { entryKey, type Keys } from '../redis/keys.ts';
import { isRedisUnavailable } from '../errors.ts';

/** Where the commit path sends each outcome: the node that accepted the message. */
export interface ReceiptSink {
  /** Delivers those accepted here; queues PUBLISHes to the nodes that accepted the others on `pipe`. */
  route(routed: readonly RoutedReceipt[], pipe: ChainableCommander): void;
}

/** What the delivery channels decide at commit (commit-batch-n.lua: an entry's plans, and ARGV[6]). */
export interface CommitPlanner {
  /** Member-id prefixes → channels, as the script takes them. */
  readonly routes: string;
  /** envelope id → its channels' plans ("" or absent for none). */
  plan(envelopes: Envelope[]): Promise<Map<string, string>>;
  /** A commit of the room came back UNPLANNED: read it again before the next. */
  forget(room: string): void;
}

export interface CommitterOptions {
  /** Default history length of a room (its historyLength setting wins). */
  historyLength: number;
  /** How long an envelope id is remembered as committed. */
  dedupeTtlMs: number;
  /** Attempts before an entry that keeps failing is dead-lettered. */
  maxAttempts: number;
  /** Entries kept in the dead-letter stream (approximate). */
  deadLength: number;
  /**
   * Replicas that must hold a commit before its receipt is sent (Redis `WAIT`); a commit not
   * copied in time gets no receipt, as if it were slow. @default { replicas: 0 } (do not wait)
   */
  replicaWait?: ReplicaWait;
}

/** One funnel entry of a commit batch, and what its commit needs besides the envelope. */
export interface CommitItem {
  env: Envelope;
  entryId: string;
  /** The funnel entry id of the same room's previous entry in this batch, or "". */
  previousEntry?: string;
  /** What the channels' planners made of it (their jobs are added atomically with the commit). */
  plans?: string;
}

/**
 * The arguments of lua/commit-batch-n.lua for entries of one partition, in stream order: the
 * number of keys, the keys, the values. `routes` says which channel reaches which member-id
 * prefix; `wake`, on a Redis Cluster, announces new outbox jobs.
 */
export function commitBatchArgs(
  keys: Keys,
  partition: number,
  lease: string,
  items: readonly CommitItem[],
  options: Pick<CommitterOptions, 'historyLength' | 'dedupeTtlMs'>,
  now: number,
  routes = LIVE_ONLY,
  wake = false,
): (string | number)[] {
  const p = partition;
  const keyList: string[] = [keys.lease(p), keys.funnel(p), keys.outbox(p), keys.active(p)];
  const values: (string | number)[] = [
    lease,
    RELAY_GROUP,
    options.historyLength,
    options.dedupeTtlMs,
    now,
    routes,
    wake ? 1 : 0,
  ];
  for (const { env, entryId, previousEntry = '', plans = '' } of items) {
    const [head, tail] = messageFrameParts(env);
    // prettier-ignore
    keyList.push(
      keys.seen(p, env.id), keys.msg(p, env.id), keys.room(env.room), keys.seq(env.room),
      keys.history(env.room), keys.members(env.room), keys.reads(env.room),
    );
    // prettier-ignore
    values.push(
      entryId, head, tail, keys.live(env.room), memberIdOf(env.sender), env.room,
      previousEntry, env.id, plans,
    );
  }
  return [keyList.length, ...keyList, ...values];
}

/** Routes with no outbox channel: only `user:` members, over the live path. */
const LIVE_ONLY = '{"user":["",""]}';

/**
 * The commit path: a batch of funnel entries becomes one pipeline of commit scripts (in
 * stream order, so each room's seq follows the funnel), then receipts and dead letters.
 */
export class Committer implements BatchProcessor {
  /** Failed commits per funnel entry, by {@link entryKey}. */
  private readonly attempts = new Map<string, number>();
  /** Connection drops so far: a WAIT answered across one vouches for nothing. */
  private drops = 0;

  constructor(
    /** With replica waits, a connection of its own: a WAIT holds its connection meanwhile. */
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly receipts: ReceiptSink,
    private readonly metrics: Metrics,
    private readonly options: CommitterOptions,
    private readonly log: Logger,
    /** The channels' say in each commit (SMS texts, opt-outs). */
    private readonly planner: CommitPlanner,
  ) {
    if (options.replicaWait?.replicas) onConnectionDrop(redis, () => this.drops++);
  }

  async process(entries: FunnelEntry[]): Promise<BatchOutcome> {
    const { keys, options } = this;
    const retry = new Set<number>();
    const fenced = new Set<number>();
    const dead: DeadLetter[] = [];
    const receipts = batch(this.redis);
    /** Receipts to send: rejections as they come, confirmations once their commits are copied. */
    const routed: RoutedReceipt[] = [];
    const lastOfRoom = new Map<string, string>();
    const postponed: string[] = [];
    const now = Date.now();

    const parsed: { entry: FunnelEntry; env: Envelope }[] = [];
    for (const entry of entries) {
      try {
        if (entry.data === null)
          throw new Error('entry has no envelope (trimmed or written by something else)');
        parsed.push({ entry, env: parseEnvelope(entry.data) });
      } catch (err) {
        dead.push({ entry, reason: 'invalid_envelope', detail: (err as Error).message });
      }
    }
    let plans = new Map<string, string>();
    try {
      plans = await this.planner.plan(parsed.map((p) => p.env));
    } catch (err) {
      // Without the plan nothing may commit (its deliveries would be lost): the batch waits.
      this.log.warn({ err }, 'could not plan the deliveries of a batch; retrying it');
      for (const { entry } of parsed) retry.add(entry.partition);
      parsed.length = 0;
    }
    // One script call per partition, its entries in stream order (so each room's seq
    // follows the funnel).
    const byPartition = new Map<
      number,
      { entry: FunnelEntry; env: Envelope; item: CommitItem }[]
    >();
    for (const { entry, env } of parsed) {
      const previousEntry = lastOfRoom.get(env.room) ?? '';
      lastOfRoom.set(env.room, entry.id);
      const item = { env, entryId: entry.id, previousEntry, plans: plans.get(env.id) ?? '' };
      const group = byPartition.get(entry.partition) ?? [];
      group.push({ entry, env, item });
      byPartition.set(entry.partition, group);
    }
    const pipe = batch(this.redis);
    const groups = [...byPartition.values()];
    for (const group of groups) {
      // prettier-ignore
      pipe.commitBatch(...commitBatchArgs(
        keys, group[0]!.entry.partition, group[0]!.entry.lease, group.map((g) => g.item),
        options, now, this.planner.routes, isCluster(this.redis),
      ));
    }

    const drops = this.drops;
    const results = groups.length > 0 ? ((await pipe.exec()) ?? []) : [];
    /** Receipts of commits (and duplicates), sent once their partition's master is copied. */
    const confirmed: { partition: number; origin: Envelope['origin']; receipt: Receipt }[] = [];
    const committedAt = Date.now();
    let committed = 0;
    const commits = groups.flatMap((group, g) => {
      const [err, replies] = results[g] ?? [new Error('no reply')];
      return group.map(({ entry, env }, i) => {
        if (err) return { entry, env, err };
        const reply = (replies as [Code, number, number | string][])[i];
        if (!reply) return { entry, env, err: new Error('no reply for the entry') };
        if (reply[0] === Code.FAILED) return { entry, env, err: new Error(String(reply[2])) };
        return { entry, env, reply };
      });
    });
    commits.forEach(({ entry, env, err, reply }) => {
      if (err || !reply) {
        this.failed(entry, err ?? new Error('no reply'), retry, dead, postponed);
        return;
      }
      const [status, seq, recipients] = reply as [Code, number, number];
      if (status === Code.FENCED) {
        fenced.add(entry.partition);
      } else if (status === Code.OUT_OF_ORDER) {
        retry.add(entry.partition);
      } else if (status === Code.UNPLANNED) {
        // A planner thought its channel inactive in the room (SMS: no numbers): it reads again.
        this.planner.forget(env.room);
        retry.add(entry.partition);
      } else if (status === Code.NO_ROOM) {
        dead.push({ entry, reason: 'room_deleted', detail: `room ${env.room} no longer exists` });
        const message = `room ${env.room} does not exist`;
        const rejected = {
          id: env.id,
          room: env.room,
          status: 'rejected',
          code: 'not_found',
          message,
        } as const;
        routed.push({ origin: env.origin, receipt: rejected });
      } else {
        this.attempts.delete(entryKey(entry.partition, entry.id));
        if (status === Code.OK) {
          committed++;
          this.metrics.relayed.inc({ source: env.source });
          this.metrics.ingressToCommit.observe(Math.max(0, committedAt - env.receivedAt) / 1000);
        } else if (status === Code.ALREADY) {
          this.metrics.duplicates.inc();
        }
        const kind = status === Code.OK ? 'committed' : 'duplicate';
        confirmed.push({
          partition: entry.partition,
          origin: env.origin,
          receipt: { id: env.id, room: env.room, status: kind, seq, recipients },
        });
      }
    });
    const unreplicated = await this.unreplicated(confirmed, drops);
    for (const { partition, origin, receipt } of confirmed)
      if (!unreplicated.has(partition)) routed.push({ origin, receipt });
    this.receipts.route(routed, receipts);
    if (committed > 0) this.metrics.commitBatch.observe(committed);
    if (postponed.length > 0) {
      // One line per batch, not per entry: an outage would otherwise flood the log.
      this.log.warn(
        { entries: postponed.length, err: postponed[0] },
        'commits postponed: Redis unavailable (out of memory, loading, unreachable); retrying',
      );
    }
    if (dead.length > 0) await this.deadLetter(dead, retry);
    // Not waited for: the entries are acknowledged already, so a failed publish could not
    // be retried anyway, and the next read need not wait a round trip for it (it goes out
    // after it on the same connection).
    if (receipts.length > 0)
      receipts.exec().catch((err: unknown) => {
        this.log.warn(
          { err },
          "could not publish receipts to other nodes; their clients' acks time out (the messages are committed)",
        );
      });
    return { retry, fenced };
  }

  /**
   * With replica waits: the partitions (of those with receipts) whose commits the replicas
   * did not all acknowledge in time, whose receipts are withheld. One WAIT per master that
   * took commits, on the connection the commit scripts went through: a pipeline keyed to one
   * of its partitions goes to that master's connection, the one the client's auto-pipelining
   * sent them on, and WAIT covers every earlier write of its connection. One per master, not
   * per partition: a master without replicas would make each of them wait the whole timeout.
   */
  private async unreplicated(
    confirmed: readonly { partition: number }[],
    drops: number,
  ): Promise<Set<number>> {
    const { replicas = 0, timeoutMs = 0 } = this.options.replicaWait ?? {};
    if (replicas === 0 || confirmed.length === 0) return new Set();
    const byServer = new Map<string, number[]>();
    for (const { partition } of confirmed) {
      const server = serverOf(this.redis, this.keys.lease(partition));
      const group = byServer.get(server) ?? [];
      if (!group.includes(partition)) group.push(partition);
      byServer.set(server, group);
    }
    const failed = new Set<number>();
    let fewest = replicas;
    await Promise.all(
      [...byServer.values()].map(async (partitions) => {
        const replies = await this.redis
          .pipeline()
          .exists(this.keys.lease(partitions[0] as number))
          .wait(replicas, timeoutMs)
          .exec()
          .catch((err: Error): [Error, null][] => [[err, null]]);
        const waited = replies?.[1];
        const copies = waited && !waited[0] ? Number(waited[1]) : 0;
        fewest = Math.min(fewest, copies);
        if (copies < replicas) for (const p of partitions) failed.add(p);
      }),
    );
    // Any connection that dropped meanwhile may have been one the commits went through.
    if (this.drops !== drops) for (const { partition } of confirmed) failed.add(partition);
    if (failed.size > 0) {
      const withheld = confirmed.filter((c) => failed.has(c.partition)).length;
      this.metrics.commitsUnreplicated.inc(withheld);
      this.log.warn(
        { commits: withheld, partitions: [...failed], replicas, copies: fewest, timeoutMs },
        'commits not copied to enough Redis replicas in time; their receipts are withheld (clients see a slow commit)',
      );
    }
    return failed;
  }

  private failed(
    entry: FunnelEntry,
    err: Error,
    retry: Set<number>,
    dead: DeadLetter[],
    postponed: string[],
  ) {
    retry.add(entry.partition);
    // Redis out of memory, loading, unreachable...: not the message's fault, so it is retried
    // for as long as it takes; only errors of the message itself count towards dead-lettering.
    if (isRedisUnavailable(err)) {
      postponed.push(err.message);
      return;
    }
    const key = entryKey(entry.partition, entry.id);
    const attempts = (this.attempts.get(key) ?? 0) + 1;
    if (attempts >= this.options.maxAttempts) {
      this.attempts.delete(key);
      dead.push({ entry, reason: 'commit_failed', detail: `${attempts} attempts: ${err.message}` });
      return;
    }
    this.attempts.set(key, attempts);
    this.log.warn(
      { err, entry: entry.id, partition: entry.partition, attempts },
      'commit failed; will retry',
    );
  }

  /**
   * Moves entries that can never commit to `thr:dead`, then acknowledges those that are
   * safely there, so they no longer hold up their partition. One whose dead letter could
   * not be written stays pending and is retried.
   */
  private async deadLetter(dead: DeadLetter[], retry: Set<number>): Promise<void> {
    const write = batch(this.redis);
    for (const { entry, reason, detail } of dead) {
      // prettier-ignore
      write.xadd(
        this.keys.dead, 'MAXLEN', '~', this.options.deadLength, '*',
        'reason', reason, 'detail', detail, 'partition', entry.partition,
        'entry', entry.id, 'e', entry.data ?? '',
      );
    }
    const written = (await write.exec()) ?? [];
    const ack = batch(this.redis);
    dead.forEach(({ entry, reason, detail }, i) => {
      if (written[i]?.[0]) {
        retry.add(entry.partition);
        return;
      }
      this.log.warn(
        { entry: entry.id, partition: entry.partition, reason, detail },
        'dead-lettered a funnel entry (see the thr:dead stream)',
      );
      this.metrics.deadLetters.inc({ reason });
      this.metrics.discarded.inc({ reason });
      ack.xack(this.keys.funnel(entry.partition), RELAY_GROUP, entry.id);
    });
    if (ack.length > 0) await ack.exec();
  }
}

interface DeadLetter {
  entry: FunnelEntry;
  reason: string;
  detail: string;
}

import type { Redis } from 'ioredis';

/**
 * Makes every pending entry of `group` on `stream` ours, whoever read it last and however
 * recently ([XAUTOCLAIM](https://redis.io/docs/latest/commands/xautoclaim/), min-idle 0): a
 * new owner of a partition takes over what the former one read and did not finish.
 */
export async function claimAllPending(
  redis: Redis,
  stream: string,
  group: string,
  consumer: string,
): Promise<void> {
  let cursor = '0-0';
  do {
    // prettier-ignore
    const reply = (await redis.xautoclaim(
      stream, group, consumer, 0, cursor, 'COUNT', 1000, 'JUSTID',
    )) as [string, ...unknown[]];
    cursor = reply[0];
  } while (cursor !== '0-0');
}

/**
 * A wait for new stream entries ([XREAD BLOCK](https://redis.io/docs/latest/commands/xread/))
 * on a connection of its own, which another connection can end early
 * ([CLIENT UNBLOCK](https://redis.io/docs/latest/commands/client-unblock/)): a reader that
 * waits over the partitions it owns wakes at once when that set changes or it stops.
 */
export class BlockingWait {
  /** The reader's connection id (a reconnect gives a new one: looked up again before a wait). */
  private id: number | undefined;
  private blocked = false;

  constructor(
    private readonly reader: Redis,
    /** Any other connection: it sends the UNBLOCK. */
    private readonly commands: Redis,
  ) {
    reader.on('ready', () => {
      this.id = undefined;
    });
  }

  /** Resolves once a stream has an entry newer than the id given with it, `blockMs` passed, or interrupt(). */
  async wait(streams: readonly [stream: string, id: string][], blockMs: number): Promise<void> {
    this.id ??= Number(await this.reader.client('ID'));
    this.blocked = true;
    try {
      // prettier-ignore
      await this.reader.call('XREAD', 'BLOCK', blockMs, 'STREAMS', ...streams.map(([s]) => s), ...streams.map(([, id]) => id));
    } finally {
      this.blocked = false;
    }
  }

  /** Ends the wait in progress, if any, now. */
  interrupt(): void {
    if (this.blocked && this.id !== undefined)
      this.commands.client('UNBLOCK', this.id).catch(() => {});
  }
}

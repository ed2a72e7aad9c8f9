import { batch, type RedisClient } from '../redis/client.ts';
import type { PluginSetting } from '../config-file.ts';
import type { Envelope } from '../funnel/envelope.ts';
import type { Logger } from '../log.ts';
import { createFunctionPlugins, type FunctionPluginContext } from '../plugins.ts';
import type { Keys } from '../redis/keys.ts';
import type { ChannelMessage, RunnerChannel } from './channel.ts';
import { type ChannelPlan, type ChannelPlanner, InactiveRooms } from './delivery-plan.ts';

/** A committed message as a handler sees it. */
export interface HandlerMessage extends ChannelMessage {
  room: string;
}

export interface HandlerApi {
  /**
   * Posts `body` to the message's room as the service `<handler name>`, with an id derived
   * from the message: a handler run again (it is at least once) replies once.
   */
  reply(body: string): Promise<void>;
}

/** A handler (DESIGN §7): runs on the room's owner after the commit, off the read path. */
export type Handler = (message: HandlerMessage, api: HandlerApi) => void | Promise<void>;

export type HandlerContext = FunctionPluginContext;

/** A handler module's default export. */
export type HandlerFactory = (ctx: HandlerContext) => Handler | Promise<Handler>;

/** `echo`: replies `<prefix><body>` (prefix option, default "echo: "). */
const echo: HandlerFactory = ({ options }) => {
  const prefix = typeof options.prefix === 'string' ? options.prefix : 'echo: ';
  return async (message, api) => api.reply(`${prefix}${message.body}`);
};

/** The one factory of handlers: built-ins and modules, by name. */
export function createHandlers(
  settings: readonly PluginSetting[],
  log: Logger,
): Promise<Map<string, Handler>> {
  // prettier-ignore
  return createFunctionPlugins<Handler>('handlers', settings, { echo },
    'async (message, api) => {}', log);
}

/** The source of a handler's replies: handlers never run on them (no reply loops). */
export const HANDLER_SOURCE = 'handler';

/**
 * Handlers are run through the outbox (so at least once, fenced by the lease, retried and
 * dead-lettered like any delivery): at commit, each handler a room names (its `handlers`
 * setting, kept in the room hash field `handlers`, the gate) gets one job of the internal
 * channel `handler`. Rooms seen without handlers are remembered, as the SMS planner does.
 */
export class HandlerPlanner implements ChannelPlanner {
  readonly channel = 'handler';
  readonly gate = 'handlers';
  private readonly none = new InactiveRooms();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
  ) {}

  forget(room: string): void {
    this.none.forget(room);
  }

  async plan(envelopes: Envelope[]): Promise<Map<string, ChannelPlan>> {
    const plans = new Map<string, ChannelPlan>();
    const rooms = this.none.unknown(envelopes);
    if (rooms.length === 0) return plans;
    const pipe = batch(this.redis);
    for (const r of rooms) pipe.hget(this.keys.room(r), 'handlers');
    const byRoom = new Map<string, string[]>();
    ((await pipe.exec()) ?? []).forEach(([err, value], i) => {
      if (err) throw err;
      const room = rooms[i] as string;
      const names = value ? (JSON.parse(value as string) as string[]) : [];
      if (names.length > 0) byRoom.set(room, names);
      else this.none.remember(room);
    });
    for (const env of envelopes) {
      const names = byRoom.get(env.room);
      if (!names) continue;
      const extra = env.source.startsWith(`${HANDLER_SOURCE}:`)
        ? []
        : names.map((name) => ({ to: `handler:${name}`, kind: 'handler', f: [] }));
      plans.set(env.id, { skip: [], f: [], extra });
    }
    return plans;
  }
}

/**
 * The internal channel that runs handlers: one lane per (handler, room), so a room's
 * messages reach a handler in seq order; a handler that throws is retried with backoff.
 */
export function createHandlerChannel(
  handlers: ReadonlyMap<string, Handler>,
  reply: (handler: string, message: HandlerMessage, body: string) => Promise<void>,
  defaults: Pick<RunnerChannel, 'maxInFlight' | 'maxQueuedPerLane' | 'sendTimeoutMs' | 'retry'>,
): RunnerChannel {
  return {
    ...defaults,
    name: 'handler',
    prefix: 'handler',
    lane: (job) => `${job.to}|${job.room}`,
    async send(job) {
      const name = job.member.slice('handler:'.length);
      const handler = handlers.get(name);
      if (!handler) return { status: 'failed', error: `no handler ${name} on this node` };
      const message: HandlerMessage = { ...job.message, room: job.room };
      try {
        await handler(message, { reply: (body) => reply(name, message, body) });
      } catch (err) {
        // Run again after a backoff; out of attempts, dead-lettered (handler_attempts).
        return {
          status: 'retry',
          error: `handler ${name} failed: ${(err as Error)?.message ?? String(err)}`,
        };
      }
      return { status: 'delivered' };
    },
  };
}

import type { PluginSetting } from '../config-file.ts';
import { ConfigError, ThresholdError, ValidationError } from '../errors.ts';
import { RoomId } from '../funnel/envelope.ts';
import { loadPlugin } from '../plugins.ts';
import type { Ingress } from './ingress.ts';
import type {
  MessageSource,
  PublishResult,
  SourceContext,
  SourceFactory,
  SourceMessage,
  SourceMode,
} from './source.ts';

/** A source ready to be run: how to build it, and where (one node, or every node). */
export interface LoadedSource {
  name: string;
  mode: SourceMode;
  options: Record<string, unknown>;
  create(ctx: SourceContext): Promise<MessageSource>;
}

/** Sources that are part of the node itself: its HTTP and WebSocket routes, Twilio's webhooks. */
export type BuiltInSources = Record<'http' | 'websocket' | 'twilio', MessageSource>;

/** The built-ins every node runs, unless the config file names a source of the same name. */
const DEFAULTS: PluginSetting[] = [
  { name: 'http', module: 'http', options: {} },
  { name: 'websocket', module: 'websocket', options: {} },
  { name: 'twilio', module: 'twilio', options: {} },
];

/**
 * The one factory of sources (DESIGN §7): the built-ins (HTTP, WebSocket and Twilio ingress,
 * every node; MQTT) and modules named in the config's `sources`, each a `createSource(ctx)`
 * with an optional `mode` export.
 */
export async function loadSources(
  settings: readonly PluginSetting[],
  builtIns: BuiltInSources,
): Promise<LoadedSource[]> {
  const all = [...DEFAULTS.filter((d) => !settings.some((s) => s.name === d.name)), ...settings];
  const sources: LoadedSource[] = [];
  for (const setting of all) {
    const { name } = setting;
    switch (setting.module) {
      case 'http':
      case 'websocket':
      case 'twilio': {
        const source = builtIns[setting.module];
        sources.push({
          name,
          mode: 'every-node',
          options: setting.options,
          create: async () => source,
        });
        break;
      }
      case 'mqtt': {
        const { createMqttSource } = await import('./sources/mqtt.ts');
        sources.push({
          name,
          mode: 'one-node',
          options: setting.options,
          create: async (ctx) => createMqttSource(ctx),
        });
        break;
      }
      default: {
        const { factory, exports } = await loadPlugin<SourceFactory>('sources', setting);
        const mode = exports.mode ?? 'one-node';
        if (mode !== 'one-node' && mode !== 'every-node')
          throw new ConfigError(
            `sources.${name}`,
            `source module ${setting.module}: mode must be "one-node" or "every-node", not ${JSON.stringify(mode)}`,
          );
        sources.push({
          name,
          mode,
          options: setting.options,
          create: async (ctx) => checked(name, await factory(ctx)),
        });
      }
    }
  }
  return sources;
}

function checked(name: string, source: Partial<MessageSource> | undefined): MessageSource {
  if (typeof source?.start !== 'function' || typeof source.stop !== 'function')
    throw new ConfigError(`sources.${name}`, 'createSource(ctx) must return { start(), stop() }');
  return source as MessageSource;
}

const SOURCE_ID = /^[\x21-\x7e]{1,128}$/;

/**
 * `ctx.publish` of source `name`: the message becomes an envelope `<name>:<id>` (sender: the
 * service `<name>` unless it says), goes through the rooms' validators and into the funnel.
 * Errors carry the API's `code`.
 */
export function publisherFor(
  name: string,
  ingress: Pick<Ingress, 'submit'>,
): (message: SourceMessage) => Promise<PublishResult> {
  return async (m) => {
    if (!RoomId.safeParse(m?.room).success)
      throw new ValidationError('room: not a room id', 'room');
    if (typeof m.body !== 'string' || m.body === '')
      throw new ValidationError('body: a non-empty string', 'body');
    if (typeof m.id !== 'string' || !SOURCE_ID.test(m.id))
      throw new ValidationError('id: 1-128 printable ASCII characters without spaces', 'id');
    const sender = m.sender ?? { kind: 'service' as const, id: name };
    try {
      const accepted = await ingress.submit(
        {
          room: m.room,
          source: name,
          sender,
          kind: sender.kind === 'service' ? 'notification' : 'chat',
          body: m.body,
          media: m.media,
          id: `${name}:${m.id}`,
        },
        false,
      );
      return { id: accepted.id, status: accepted.duplicate ? 'duplicate' : 'accepted' };
    } catch (err) {
      if (err instanceof ThresholdError) throw err;
      throw new ThresholdError('unavailable', 503, (err as Error).message, { cause: err });
    }
  };
}

import type { PluginSetting } from '../config-file.ts';
import { ConfigError, RejectedError } from '../errors.ts';
import type { Sender } from '../funnel/envelope.ts';
import type { Logger } from '../log.ts';
import { createFunctionPlugins, type FunctionPluginContext } from '../plugins.ts';
import type { MessageCheck, Submission } from './ingress.ts';

/** What a validator sees of a message, at ingress, before the funnel. */
export interface ValidatorMessage {
  room: string;
  body: string;
  media?: string[] | undefined;
  sender: Sender;
  /** The source it came in from (`http`, `websocket`, `twilio`, a plug-in's name). */
  source: string;
}

/** A validator (DESIGN §7): nothing to let the message in, or why it is refused. */
export type Validator = (
  message: ValidatorMessage,
) => undefined | { reason: string } | Promise<undefined | { reason: string }>;

export type ValidatorContext = FunctionPluginContext;

/** A validator module's default export. */
export type ValidatorFactory = (ctx: ValidatorContext) => Validator | Promise<Validator>;

/** `max-length`: `{ max }` characters at most. */
const maxLength: ValidatorFactory = ({ name, options }) => {
  const max = Number(options.max);
  if (!Number.isInteger(max) || max < 1)
    throw new ConfigError(
      `validators.${name}`,
      'max-length: options.max must be a positive integer',
    );
  return ({ body }) => {
    const length = [...body].length;
    return length > max ? { reason: `longer than ${max} characters (${length})` } : undefined;
  };
};

/** `deny-words`: `{ words: [...] }`, none of them as a whole word, in any case. */
const denyWords: ValidatorFactory = ({ name, options }) => {
  const words = options.words;
  if (!Array.isArray(words) || words.length === 0 || !words.every((w) => typeof w === 'string'))
    throw new ConfigError(
      `validators.${name}`,
      'deny-words: options.words must be a list of words',
    );
  const escaped = (words as string[]).map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  const pattern = new RegExp(
    `(^|[^\\p{L}\\p{N}])(${escaped.join('|')})(?=$|[^\\p{L}\\p{N}])`,
    'iu',
  );
  return ({ body }) =>
    pattern.test(body) ? { reason: 'contains a word this room does not take' } : undefined;
};

/** The one factory of validators: built-ins and modules, by name. */
export function createValidators(
  settings: readonly PluginSetting[],
  log: Logger,
): Promise<Map<string, Validator>> {
  // prettier-ignore
  return createFunctionPlugins<Validator>('validators', settings,
    { 'max-length': maxLength, 'deny-words': denyWords },
    '(message) => undefined | { reason }', log);
}

/** How long a room's list of validators is remembered (rooms name them at creation). */
const CACHE_MS = 5_000;

/**
 * Runs the validators a room names (its `validators` setting) on each message at ingress:
 * the first refusal is a RejectedError with its reason, and nothing enters the funnel.
 */
export class RoomValidators implements MessageCheck {
  private readonly cache = new Map<string, { names: string[]; at: number }>();

  constructor(
    private readonly validators: ReadonlyMap<string, Validator>,
    /** The validator names of a room (none for an unknown room: ingress refuses it anyway). */
    private readonly roomValidators: (room: string) => Promise<string[]>,
  ) {}

  async check(s: Submission): Promise<void> {
    if (this.validators.size === 0) return;
    const now = Date.now();
    let cached = this.cache.get(s.room);
    if (!cached || now - cached.at > CACHE_MS) {
      if (this.cache.size > 100_000) this.cache.clear();
      cached = { names: await this.roomValidators(s.room), at: now };
      this.cache.set(s.room, cached);
    }
    const message = {
      room: s.room,
      body: s.body,
      media: s.media,
      sender: s.sender,
      source: s.source,
    };
    for (const name of cached.names) {
      const verdict = await this.validators.get(name)?.(message);
      if (verdict) throw new RejectedError(verdict.reason, name);
    }
  }
}

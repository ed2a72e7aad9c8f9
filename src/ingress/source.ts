import type { Logger } from '../log.ts';

/**
 * A message source plug-in (DESIGN §7): a module whose default export is a
 * {@link SourceFactory}. It turns its input into messages and hands them to `ctx.publish`;
 * Threshold does the rest (funnel, commit, fan-out). A module may also export
 * `mode = "every-node"`; the default, `"one-node"`, runs it on exactly one node of the mesh
 * at a time, under a lease, and moves it to another node when that one dies.
 */
export interface MessageSource {
  start(): void | Promise<void>;
  stop(): void | Promise<void>;
}

export type SourceMode = 'one-node' | 'every-node';

/** One message from a source. */
export interface SourceMessage {
  room: string;
  body: string;
  media?: string[];
  /** Who it is from (a member of the room, or a service); default: the service `<source name>`. */
  sender?: { kind: 'user' | 'phone' | 'service'; id: string };
  /**
   * The source's own stable id for the message: the envelope id becomes `<source name>:<id>`,
   * so a source that reads it again (after a crash, a reconnect) commits it once.
   */
  id: string;
}

export interface PublishResult {
  /** The envelope id, `<source name>:<id>`. */
  id: string;
  /** `duplicate`: committed before (a replay); nothing was added. */
  status: 'accepted' | 'duplicate';
}

/** What a source is built with. */
export interface SourceContext {
  /** The source's name in the config (`sources[].name`). */
  name: string;
  /** Its `sources[].options`, as written. */
  options: Record<string, unknown>;
  log: Logger;
  /** Aborted when the source is to stop (the node stops, or it moves to another node). */
  signal: AbortSignal;
  /**
   * Puts a message into the funnel. Rejects with an error whose `code` is the API's:
   * `not_found` (no such room), `forbidden` (the sender is not a member), `invalid_request`,
   * `rejected` (a room's validator refused it; `message` says why), `unavailable` (retry).
   */
  publish(message: SourceMessage): Promise<PublishResult>;
}

export type SourceFactory = (ctx: SourceContext) => MessageSource | Promise<MessageSource>;

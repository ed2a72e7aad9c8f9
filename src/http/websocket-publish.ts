import { ThresholdError } from '../errors.ts';
import { type Sender, senderOfMember } from '../funnel/envelope.ts';
import type { Accepted, Submission } from '../ingress/ingress.ts';
import type { PublishFrame } from './websocket-frames.ts';

/** What a session needs of ingress: put a client's publish into the funnel. */
export interface MessageIngress {
  submit(submission: Submission, wait: boolean): Promise<Accepted>;
}

/** The session a publish answers on. */
export interface PublishContext {
  /** The member the client acts as; undefined for the admin token (a service's notification). */
  member: string | undefined;
  conn: string;
  ingress: MessageIngress;
  maxBodyChars: number;
  isClosed(): boolean;
  send(frame: string): void;
  error(code: string, message: string, id?: string, room?: string): void;
}

/** A client's `publish` frame: into the funnel, then its `ack` (or `error`) once committed. */
export async function publishFrame(frame: PublishFrame, ctx: PublishContext): Promise<void> {
  const { member } = ctx;
  if (frame.body.length > ctx.maxBodyChars) {
    ctx.error(
      'invalid_request',
      `body is longer than ${ctx.maxBodyChars} characters`,
      frame.id,
      frame.room,
    );
    return;
  }
  const sender: Sender = member ? senderOfMember(member) : { kind: 'service', id: 'admin' };
  const accepted = await ctx.ingress.submit(
    {
      room: frame.room,
      source: 'ws',
      sender,
      kind: member ? 'chat' : 'notification',
      body: frame.body,
      media: frame.media,
      clientKey: frame.id,
      conn: ctx.conn,
      rateLimited: member,
    },
    true,
  );
  const receipt = await accepted.receipt?.promise.catch((err: Error) => {
    if (!ctx.isClosed())
      ctx.error(
        err instanceof ThresholdError ? err.code : 'timeout',
        err.message,
        frame.id,
        frame.room,
      );
    return undefined;
  });
  if (!receipt || ctx.isClosed()) return;
  if (receipt.status === 'rejected')
    ctx.error(
      receipt.code ?? 'rejected',
      receipt.message ?? 'message rejected',
      frame.id,
      frame.room,
    );
  else ctx.send(JSON.stringify({ type: 'ack', id: frame.id ?? accepted.id, seq: receipt.seq }));
}

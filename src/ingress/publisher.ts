import type { Envelope } from '../funnel/envelope.ts';

/** The funnel entry id, or the seq of an envelope committed before (nothing was added). */
export type Published = { entryId: string } | { duplicateOf: number };

/** All an ingress source sees of Threshold: put an envelope into the funnel. */
export interface Publisher {
  /**
   * Appends the envelope to its room's funnel partition and returns the entry id once
   * Redis has it; an envelope id committed before is not added again. Throws NotFoundError (no such room), ForbiddenError (sender is not a
   * member) or UnavailableError (funnel full, Redis down).
   */
  publish(envelope: Envelope): Promise<Published>;
}

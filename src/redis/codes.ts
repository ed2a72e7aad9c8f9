/**
 * What the Lua scripts in `lua/` return: one meaning per number across every script (as
 * bullmq's error codes), translated in the one place each caller reads it.
 */
export const Code = {
  /** Nothing to do: unknown key, lease or recipient (renew, release, record-sid, record-status). */
  NONE: 0,
  /** Done now: committed, settled, moved, renewed, or go ahead and send. */
  OK: 1,
  /** Done before, nothing changed: committed earlier, the receiver has it, in that state already. */
  ALREADY: 2,
  /** Go ahead and send, though an earlier attempt's outcome is unknown (it may arrive twice). */
  AMBIGUOUS: 3,
  /** The partition's lease is not ours: nothing was written or read. */
  FENCED: -1,
  /** The room does not exist (any more). */
  NO_ROOM: -2,
  /** The sender is not a member of the room. */
  NOT_MEMBER: -3,
  /** The funnel partition is at its length limit. */
  FUNNEL_FULL: -4,
  /** The body is too long for the room (phones get one SMS/MMS). */
  TOO_LONG: -5,
  /** The previous entry of the room is not committed yet: retry after it. */
  OUT_OF_ORDER: -6,
  /** A channel that plans at commit is active in the room, and no plan came: plan again. */
  UNPLANNED: -7,
  /** An earlier attempt may still be in flight: try again after the time returned. */
  IN_FLIGHT: -8,
  /** Older than the current state (a late status report): nothing changed. */
  STALE: -9,
  /** A state the script does not know. */
  UNKNOWN_STATE: -10,
  /** At its size limit (a member's push subscriptions): nothing written. */
  FULL: -11,
  /** Too late for the change: the notification is dispatching, done, cancelled or expired. */
  CLOSED: -12,
  /** A command of this entry's commit raised an error (the batch's other entries went on). */
  FAILED: -13,
} as const;

export type Code = (typeof Code)[keyof typeof Code];

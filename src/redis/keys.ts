import { crc32 } from 'node:zlib';

/** Room ids: DESIGN §2. */
export const ROOM_ID = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** `partition = hash32(room) mod P`: CRC-32 of the room id, stable across languages and versions. */
export function partitionOf(room: string, partitions: number): number {
  return crc32(room) % partitions;
}

/**
 * A stream entry's identity across partitions. Entry ids are unique per stream only: streams
 * written in the same millisecond (one batch over several partitions) share ids, so the
 * partition is part of the key.
 */
export function entryKey(partition: number, entryId: string): string {
  return `${partition}/${entryId}`;
}

/**
 * The one place key names are built (DESIGN §3). Everything that belongs to partition n
 * carries the hash tag `{p<n>}` so one Lua script can touch all of it, also on Redis Cluster.
 */
export class Keys {
  constructor(
    readonly prefix: string,
    readonly partitions: number,
  ) {}

  partitionOf(room: string): number {
    return partitionOf(room, this.partitions);
  }

  private p(n: number): string {
    return `${this.prefix}{p${n}}:`;
  }

  // Deployment-wide keys.
  get meta() {
    return `${this.prefix}meta`;
  }
  get nodes() {
    return `${this.prefix}nodes`;
  }
  node(id: string) {
    return `${this.prefix}node:${id}`;
  }
  get rooms() {
    return `${this.prefix}rooms`;
  }
  get dead() {
    return `${this.prefix}dead`;
  }
  /** A requeue's claim on one dead letter (string with a ttl): one key, any slot. */
  deadRequeue(entryId: string) {
    return `${this.prefix}dead:requeue:${entryId}`;
  }
  member(id: string) {
    return `${this.prefix}member:${id}`;
  }
  memberRooms(id: string) {
    return `${this.prefix}member:${id}:rooms`;
  }
  number(e164: string) {
    return `${this.prefix}number:${e164}`;
  }
  /** Marks an inbound Twilio MessageSid as handled (keywords; texts dedupe on their envelope id). */
  twilioSeen(messageSid: string) {
    return `${this.prefix}twilio:seen:${messageSid}`;
  }

  /**
   * A member's presence (hash: node id → that node's count of the member's open WebSockets):
   * one key per member, not per room, so connecting writes one key however many rooms.
   */
  presence(member: string) {
    return `${this.prefix}presence:${member}`;
  }
  /** The members a node has WebSockets for (set): what is swept when the node is gone. */
  presenceNode(node: string) {
    return `${this.prefix}presence:node:${node}`;
  }

  /** A webhook endpoint (hash: url, secret, disabled…): one key, so any slot will do. */
  webhook(name: string) {
    return `${this.prefix}webhook:${name}`;
  }

  /** A member's Web Push subscriptions (hash: endpoint → JSON keys): one key, any slot. */
  pushSubscriptions(member: string) {
    return `${this.prefix}member:${member}:push`;
  }

  /** The VAPID key pair every node signs push requests with (JSON), when not configured. */
  get pushVapid() {
    return `${this.prefix}push:vapid`;
  }
  /** Every tag with members (zset, score 0: ordered by name); the listing, not the truth. */
  get tags() {
    return `${this.prefix}tags`;
  }
  /** A tag's members (zset, every score 0, so read in lexicographic order with BYLEX). */
  tagMembers(tag: string) {
    return `${this.prefix}{tag:${tag}}:members`;
  }

  /** A client's publish rate limit (GCRA state), shared by every node. */
  rateLimit(member: string) {
    return `${this.prefix}rl:${member}`;
  }

  /** A member's tokens issued before this time (ms) are void: logout-all (one key, any slot). */
  tokensRevoked(member: string) {
    return `${this.prefix}auth:revoked:${member}`;
  }

  /** The lease of a one-node source: `<node>:<token>`, with its token counter in the same slot. */
  sourceLease(name: string) {
    return `${this.prefix}{src:${name}}:lease`;
  }
  sourceLeaseToken(name: string) {
    return `${this.prefix}{src:${name}}:lease-token`;
  }

  // Pub/sub channels.
  live(room: string) {
    return `${this.prefix}live:${room}`;
  }
  nodeChannel(id: string) {
    return `${this.prefix}node:${id}`;
  }
  /** A member's own events (`{"type":"joined","room"}`), for sessions that follow "mine". */
  memberChannel(id: string) {
    return `${this.prefix}member:${id}:live`;
  }
  /** API key revocations, `{"key"}`: every node drops the key from its cache. */
  get keyRevokedChannel() {
    return `${this.prefix}auth:key-revoked`;
  }
  /**
   * Frames for one member's WebSockets on whichever node they are (`{"member","frame"}`):
   * invites now, notifications later. One channel every node follows, not one per member.
   */
  get memberNotices() {
    return `${this.prefix}member:notices`;
  }
  /** Logout-all events, `{"member","before"}`: every node updates its cache of tokensRevoked. */
  get revokedChannel() {
    return `${this.prefix}auth:revoked`;
  }
  /** Membership changes (join/leave), so peers rebalance at once instead of at the next heartbeat. */
  get meshChannel() {
    return `${this.prefix}mesh`;
  }

  // Partition keys.
  funnel(n: number) {
    return `${this.p(n)}funnel`;
  }
  /** A notification (hash): status, priority, what it says, to whom, counts (DESIGN §3). */
  notification(n: number, id: string) {
    return `${this.p(n)}ntf:${id}`;
  }
  /** Its recipients: member → state (live, a channel, delivered, sent, failed, expired). */
  notificationRecipients(n: number, id: string) {
    return `${this.p(n)}ntf:${id}:to`;
  }
  /** Notifications waiting for their time, one set per priority: id → sendAt (ms). */
  notificationsDue(n: number, priority: 'high' | 'normal' | 'low') {
    return `${this.p(n)}ntf:due:${priority}`;
  }
  /** Notifications claimed for dispatch and not finished: id → claim time (ms). */
  notificationsDispatching(n: number) {
    return `${this.p(n)}ntf:dispatching`;
  }
  /** Live recipients who have not answered `received`: "<id> <member>" → fallback time. */
  notificationsWaiting(n: number) {
    return `${this.p(n)}ntf:waiting`;
  }
  /** The prefix of the partition's notification keys, for scripts that build them. */
  notificationPrefix(n: number) {
    return `${this.p(n)}ntf:`;
  }

  lease(n: number) {
    return `${this.p(n)}lease`;
  }
  leaseToken(n: number) {
    return `${this.p(n)}lease-token`;
  }
  outbox(n: number) {
    return `${this.p(n)}outbox`;
  }
  /** The partition's rooms by latest activity: zset, room id → last commit (or creation), ms. */
  active(n: number) {
    return `${this.p(n)}active`;
  }
  /** Outbox jobs waiting for a retry: zset, score = not before (ms). */
  outboxRetry(n: number) {
    return `${this.p(n)}outbox:retry`;
  }
  seen(n: number, envelopeId: string) {
    return `${this.p(n)}seen:${envelopeId}`;
  }
  msg(n: number, envelopeId: string) {
    return `${this.p(n)}msg:${envelopeId}`;
  }
  /** Send markers of a keyword reply (hash, with ttl): its text has no message of its own. */
  reply(n: number, inboundMessageSid: string) {
    return `${this.p(n)}reply:${inboundMessageSid}`;
  }

  /** Prefix of the room keys of partition n: `<prefix>{p<n>}:room:` (room-progress-1.lua). */
  roomPrefix(n: number) {
    return `${this.p(n)}room:`;
  }

  // Room keys live in their room's partition.
  room(room: string) {
    return `${this.p(this.partitionOf(room))}room:${room}`;
  }
  members(room: string) {
    return `${this.room(room)}:members`;
  }
  seq(room: string) {
    return `${this.room(room)}:seq`;
  }
  history(room: string) {
    return `${this.room(room)}:history`;
  }
  /** Members who want the room's messages they miss while offline (the `missed` setting). */
  missed(room: string) {
    return `${this.room(room)}:missed`;
  }
  /** Read markers: member id → the seq they have read up to. */
  reads(room: string) {
    return `${this.room(room)}:reads`;
  }
}

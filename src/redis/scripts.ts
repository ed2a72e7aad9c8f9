import { readdirSync, readFileSync } from 'node:fs';
import type { Result } from 'ioredis';
import type { RedisClient } from './client.ts';

type Arg = string | number;

/**
 * The Lua scripts in `lua/`, registered with ioredis `defineCommand` (EVALSHA with a
 * fallback to EVAL). A file `verb-noun-<numKeys>.lua` becomes the command `verbNoun`;
 * `verb-noun-n.lua` takes a varying number of keys, which its caller passes first.
 */
declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** lua/publish-envelope-4.lua */
    publishEnvelope(
      ...args: [string, string, string, string, Arg, Arg, Arg, Arg, Arg, Arg, Arg]
    ): Result<string | number | [2, number], Context>;
    /** lua/commit-batch-n.lua: the number of keys first, then the keys, then the values */
    commitBatch(
      ...args: Arg[]
    ): Result<[code: number, seq: number, recipientsOrError: number | string][], Context>;
    /** lua/acquire-lease-2.lua */
    acquireLease(
      lease: string,
      token: string,
      node: string,
      ttlMs: number,
    ): Result<string | null, Context>;
    /** lua/renew-lease-1.lua */
    renewLease(lease: string, value: string, ttlMs: number): Result<number, Context>;
    /** lua/release-lease-1.lua */
    releaseLease(lease: string, value: string): Result<number, Context>;
    /** lua/read-fenced-2.lua */
    readFenced(
      lease: string,
      stream: string,
      value: string,
      group: string,
      consumer: string,
      count: number,
      cursor: string,
    ): Result<-1 | [[string, string[] | null][], string], Context>;
    /** lua/trim-funnel-1.lua */
    trimFunnel(funnel: string, group: string): Result<[number, number, number], Context>;
    /** lua/record-status-1.lua */
    recordStatus(
      msg: string,
      channel: string,
      member: string,
      status: string,
      errorCode: string,
      ref?: string,
    ): Result<number, Context>;
    /** lua/begin-send-2.lua */
    beginSend(
      lease: string,
      delivery: string,
      value: string,
      prefix: string,
      now: number,
      clean: string,
      inFlightMs: number,
      ttlMs: number,
    ): Result<[number, ...(string | number)[]], Context>;
    /** lua/record-ref-1.lua */
    recordRef(delivery: string, prefix: string, ref: string): Result<number, Context>;
    /** lua/settle-job-3.lua */
    settleJob(
      ...args: [string, string, string, string, string, string, Arg, string]
    ): Result<number, Context>;
    /** lua/promote-retries-2.lua */
    promoteRetries(
      retry: string,
      outbox: string,
      now: number,
      limit: number,
      wake: 0 | 1,
    ): Result<number, Context>;
    /** lua/limit-rate-1.lua */
    limitRate(key: string, intervalMs: number, burst: number): Result<[0 | 1, number], Context>;
    /** lua/mark-read-3.lua */
    markRead(
      reads: string,
      seq: string,
      members: string,
      member: string,
      upTo: number,
      channel: string,
      room: string,
    ): Result<[1 | 2 | -3, number], Context>;
    /** lua/create-room-2.lua */
    createRoom(
      room: string,
      active: string,
      id: string,
      createdAt: number,
      ...fields: Arg[]
    ): Result<1 | 2, Context>;
    /** lua/room-progress-1.lua */
    roomProgress(
      active: string,
      member: string,
      roomPrefix: string,
      ...rooms: string[]
    ): Result<(string | number | null)[], Context>;
    /** lua/add-subscription-1.lua */
    addSubscription(
      subscriptions: string,
      endpoint: string,
      value: string,
      max: number,
    ): Result<1 | 2 | -11, Context>;
    /** lua/claim-notifications-6.lua: claimed, dispatching and due waiting entries */
    claimNotifications(
      lease: string,
      dueHigh: string,
      dueNormal: string,
      dueLow: string,
      dispatching: string,
      waiting: string,
      value: string,
      now: number,
      most: number,
      prefix: string,
      listed: number,
    ): Result<-1 | [claimed: string[], dispatching: string[], waiting: string[]], Context>;
    /** lua/change-notification-4.lua */
    changeNotification(
      ...args: [string, string, string, string, string, string, number]
    ): Result<[number, string?], Context>;
    /** lua/dispatch-recipients-5.lua */
    dispatchRecipients(...args: Arg[]): Result<-1 | string[], Context>;
    /** lua/advance-recipient-4.lua */
    advanceRecipient(
      ...args: [string, string, string, string, string, string, string, string, '0' | '1', string]
    ): Result<1 | -9, Context>;
    /** lua/hand-over-2.lua */
    handOver(
      msg: string,
      outbox: string,
      channel: string,
      to: string,
      fields: string,
      wake: '0' | '1',
    ): Result<0 | 1 | 2, Context>;
    /** lua/mark-missed-3.lua */
    markMissed(
      room: string,
      members: string,
      missed: string,
      member: string,
      on: '0' | '1',
    ): Result<number, Context>;
    /** lua/heartbeat-node-1.lua */
    heartbeatNode(
      nodes: string,
      node: string,
      ttlMs: number,
    ): Result<[number, ...string[]], Context>;
    /** lua/set-presence-1.lua */
    setPresence(
      presence: string,
      node: string,
      count: number,
    ): Result<[before: number, nodes: number], Context>;
  }
}

const LUA_DIR = new URL('./lua/', import.meta.url);

let scripts: { name: string; numberOfKeys: number | undefined; lua: string }[] | undefined;

function load() {
  scripts ??= readdirSync(LUA_DIR)
    .filter((f) => f.endsWith('.lua'))
    .map((file) => {
      const match = /^([a-z]+)-([a-z]+)-(\d+|n)\.lua$/.exec(file);
      if (!match) throw new Error(`Lua script ${file} is not named verb-noun-<numKeys|n>.lua`);
      const [, verb, noun, keys] = match as unknown as [string, string, string, string];
      return {
        name: verb + noun.charAt(0).toUpperCase() + noun.slice(1),
        numberOfKeys: keys === 'n' ? undefined : Number(keys),
        lua: readFileSync(new URL(file, LUA_DIR), 'utf8'),
      };
    });
  return scripts;
}

/** Registers every script on a client; pipelines made from it get them too. */
export function defineScripts<C extends RedisClient>(redis: C): C {
  for (const { name, numberOfKeys, lua } of load()) {
    if (!(name in redis))
      redis.defineCommand(name, numberOfKeys === undefined ? { lua } : { numberOfKeys, lua });
  }
  return redis;
}

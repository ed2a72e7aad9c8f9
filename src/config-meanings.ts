import type { Config } from './config.ts';

/** `mesh.leaseTtlMs`: the dotted name of every leaf setting (lists, set in a file only, aside). */
type SettingName<T, P extends string = ''> = {
  [K in keyof T & string]: T[K] extends readonly unknown[]
    ? never
    : T[K] extends Record<string, unknown>
      ? SettingName<T[K], `${P}${K}.`>
      : `${P}${K}`;
}[keyof T & string];

/**
 * What each setting means: `threshold settings` prints it, and the README's configuration table
 * must say the same (test/integration/readme.test.ts), so the two cannot drift. Markdown as in
 * the README; a new setting does not compile until it has its line here.
 */
export const MEANINGS: Record<SettingName<Config>, string> = {
  redisUrl:
    'Redis to use; empty starts a local `redis-server` (append-only file on) under `dataDir`',
  host: 'address to listen on',
  port: 'HTTP and WebSocket port (0 picks a free one)',
  nodeId: "this node's id in the mesh; stable across restarts",
  partitions: 'funnel partitions P; fixed for the life of a deployment',
  keyPrefix: 'prefix of every Redis key',
  adminToken: 'bearer token of the admin routes',
  jwtSecret: 'HS256 secret of client JWTs',
  publicUrl:
    'the URL Twilio calls (webhook signatures, status callbacks); often a load balancer in front of every node; webhook signatures are checked against advertiseUrl when empty, and no status callbacks are asked for (recipients then stay `sent`)',
  advertiseUrl:
    'the URL that reaches this very node, handed out by `/v1/cluster` and `/v1/connect`; default: the listen address',
  dataDir:
    'where the local `redis-server` keeps its data, and the embedded auth database (`<dataDir>/auth`)',
  databaseUrl:
    "the auth database (accounts), `postgres://user:pass@host:5432/db`; empty: embedded PGlite under `<dataDir>/auth`, this node's alone (see Accounts)",
  appendFsync: "the local `redis-server`'s fsync policy: `everysec` or `always` (see Durability)",
  redisCommandTimeoutMs:
    'how long a Redis command may take before it fails: while Redis is unreachable, ingress answers 503 with `Retry-After` after at most this long',
  redisReplicaWait:
    'replicas (0-5) that must hold a message before ingress acknowledges it and before `?wait=1` and WebSocket acks confirm its commit (Redis `WAIT`; see Durability on a Redis Cluster); 0: do not wait',
  redisReplicaWaitMs:
    'how long that `WAIT` may take: a message not copied in time gets 503 with `Retry-After` at ingress (it is stored: retry with the same id), a commit not copied in time is confirmed like a slow one (202 `pending`)',
  logLevel: '`fatal` … `trace`, or `silent`',
  logFormat:
    '`json` (one object a line, for log collectors) or `pretty` (time, level word and message, for people in a terminal)',
  'mesh.heartbeatMs': 'membership heartbeat and lease renewal interval',
  'mesh.nodeTtlMs': 'a node silent this long is dropped from the ring',
  'mesh.leaseTtlMs': "partition lease lifetime; a crashed node's partitions move after it",
  'mesh.readBatch': 'funnel entries read per partition per round',
  'mesh.readBlockMs': 'how long one funnel read waits for new entries',
  'mesh.maxAttempts': 'commit attempts before an entry is dead-lettered to `thr:dead`',
  'mesh.trimIntervalMs':
    'how often acknowledged funnel entries are trimmed (and lag metrics refreshed)',
  'mesh.maxFunnelLength': 'entries a partition may hold before ingress answers 503 (0 = no limit)',
  'rooms.historyLength': "messages kept per room (a room's `historyLength` setting wins)",
  'rooms.dedupeTtlHours': 'how long a message id is remembered, so a retry commits once',
  'rooms.membersMayCreate':
    'whether members (client tokens) may start conversations with `POST /v1/rooms`; `false`: admins only',
  'rooms.maxCreatedMembers': 'most members a room a member starts may have, its creator included',
  'rooms.createPerHour':
    'rooms one member may start per hour (a burst of as many, then evenly); over it: 429 with Retry-After; 0: no limit',
  'tags.maxUpload':
    'ids (add and remove together) one delta upload `POST /v1/tags/:tag/members` may carry; more: 400',
  'tags.maxUploadBytes':
    'request body limit of a delta upload (that route only; others keep http.maxBodyBytes); larger: 413',
  'tags.maxExpressionLength': 'longest tag expression, in characters; longer: 400',
  'tags.maxExpressionTags':
    'tags one expression may name, each use counting; more: 400 naming the column',
  'tags.expandPageSize':
    'members read from a tag per round trip while an expression is expanded (memory: about two pages per tag of the expression)',
  'http.maxBodyBytes': 'larger request bodies get 413',
  'http.waitTimeoutMs': 'how long `?wait=1` and WebSocket acks wait for the commit',
  'http.maxBodyChars': 'longest message body, in characters',
  'http.allowedOrigins':
    "comma-separated origins (`https://app.example.com`) whose pages may call the HTTP API (CORS), compared like `ws.allowedOrigins`; `*`: any origin; another origin's preflight gets 403. Empty: the same as `ws.allowedOrigins` (so any origin while both are empty)",
  'ws.maxFrameBytes': 'larger client frames close the connection (1009)',
  'ws.maxBufferedBytes': 'unsent bytes a client may fall behind before it is closed (4008)',
  'ws.heartbeatMs': 'server ping interval; a client that misses a pong is dropped',
  'ws.replayPageSize': 'history messages read per page when a client catches up',
  'ws.allowedOrigins':
    'comma-separated origins (`https://app.example.com`) browsers may open WebSockets from, compared in lowercase without a trailing slash (as browsers send them); another `Origin` gets 403 before the upgrade; empty: any. Clients that send no `Origin` (not browsers) are let in on their token',
  'ws.framesPerSecond':
    'frames one connection may send per second, sustained; more are dropped with one `rate_limited` error frame (0 = no limit)',
  'ws.frameBurst': 'frames one connection may send at once after a quiet spell',
  'ws.maxDroppedFrames':
    'frames a connection may have dropped (over the frame rate) before it is closed with 1008; drops are forgiven at `ws.framesPerSecond`, so a client sustained at more than twice the rate is closed within seconds, one that only bursts over it is not',
  'ws.maxConnectionsPerIp':
    "open WebSocket connections per peer address on one node; more get 429 before the upgrade (0 = no limit; behind a proxy every client has the proxy's address)",
  'ws.maxConnectionsPerMember':
    'open WebSocket connections per member on one node; more get 429 before the upgrade (0 = no limit)',
  'rateLimit.publishPerSecond':
    'publishes per second per member over every node together (HTTP and WebSocket; the admin token is exempt); more get 429 with `Retry-After` (0 = no limit)',
  'rateLimit.publishBurst': 'publishes a member may send at once after a quiet spell',
  'twilio.accountSid': 'Twilio account SID; without it (or the token) SMS runs in development mode',
  'twilio.authToken': 'Twilio auth token: authenticates sends and verifies webhook signatures',
  'twilio.apiUrl': 'Twilio REST base (a local stand-in in tests and development)',
  'sms.ratePerSecond': 'texts per second per sending number (about 1 for a US long code)',
  'sms.burst': 'texts a number may send at once after a quiet spell',
  'sms.maxAttempts':
    'send attempts (5xx, network errors, timeouts, unexpected errors; not 429s) before a text is dead-lettered to `thr:dead`',
  'sms.maxRetryHours':
    'how long a text may keep being retried, 429s included (which count no attempt); then it is dead-lettered (`sms_expired`)',
  'sms.backoffBaseMs': 'first retry delay; doubles each attempt, with jitter (50–100 %)',
  'sms.backoffMaxMs': 'longest retry delay',
  'sms.sendTimeoutMs':
    'how long one Twilio request may take; a timeout is ambiguous and reconciled before any resend (see Sending)',
  'sms.maxInFlight': 'Twilio requests in flight at once, over all numbers',
  'sms.maxQueuedPerNumber':
    'jobs a node holds in memory per sending number; a longer backlog waits in the retry set',
  'outbox.readBatch': "outbox jobs read per round (every channel's)",
  'outbox.maxInFlight':
    'sends in flight at once per plug-in or webhook channel (SMS: `sms.maxInFlight`)',
  'outbox.maxQueuedPerLane':
    "jobs held in memory per lane (a channel's member); more wait in the retry set",
  'outbox.sendTimeoutMs':
    "how long a plug-in channel's send may take; an attempt younger than this may still be in flight and is not repeated",
  'outbox.maxAttempts':
    'attempts of a plug-in or webhook delivery before it is dead-lettered (`<channel>_attempts`)',
  'outbox.maxRetryHours': 'how long such a delivery may keep being retried (`<channel>_expired`)',
  'outbox.backoffBaseMs':
    'first retry delay; doubles each attempt, with jitter (50–100 %), unless the channel answers `retryAfterMs`',
  'outbox.backoffMaxMs': 'longest retry delay',
  'webhooks.timeoutMs': 'how long one POST to a webhook endpoint may take; a timeout is retried',
  'push.vapidPublicKey':
    'the VAPID public key (base64url, as `web-push` prints it), handed to browsers by `GET /v1/push/key`; empty with the private key empty too: generated once and kept in Redis (`thr:push:vapid`) for every node',
  'push.vapidPrivateKey': 'its private key (32 bytes, base64url); set both or neither',
  'push.subject':
    'the VAPID `sub` claim push services may contact you at: a `mailto:` address or an `https:` URL',
  'push.ttlSeconds':
    'how long a push service keeps a notification for a device that is offline (`TTL`; 0: deliver now or never)',
  'push.timeoutMs': 'how long one request to a push service may take; a timeout is retried',
  'push.maxSubscriptionsPerMember':
    'push subscriptions (browsers, devices) one member may register; more get 409',
  'auth.defaultRegion':
    'ISO 3166 region of phones given without a country code (`(201) 555-0123` → `+12015550123`)',
  'auth.allowedCountries':
    'comma-separated ISO 3166 regions (`US,CA,GB`) sign-in codes are texted to; others get 403 (SMS pumping); empty: `auth.defaultRegion` only',
  'auth.smsFrom':
    'the E.164 number sign-in codes come from; without it a node with Twilio answers 503 to sign-in; in SMS development mode it defaults to `+15005550006`',
  'auth.startsPerAddressPerHour':
    '`POST /v1/auth/phone/start` calls per client address per hour, over every node (then 429 with `Retry-After`; 0: no limit)',
  'auth.startsPerHour':
    'codes texted per hour over all clients and nodes together (then 429; 0: no limit)',
  'auth.tokenTtlHours':
    'lifetime of a token from `POST /v1/auth/phone/verify` (`exp`); also how long a logout-all is remembered',
  'invites.linkUrl':
    "the link texted to an invited phone that has no account yet (`{id}` becomes the invite id): your app's deep link or web page",
  'invites.maxConnections':
    'connections a member may have: inviting while full, or accepting when either side is full, is 409 `connections_full`',
  'notifications.tickMs':
    'how often a node dispatches the due notifications of the partitions it holds (a notification fires within this of its `sendAt`)',
  'notifications.pageSize':
    'recipients expanded, checked for presence and recorded per step: what a dispatch holds in memory',
  'notifications.fallbackAfterMs':
    'how long a member reached over WebSocket has to answer `received` before their fallback channels start',
  'notifications.channels': 'the fallback channels, in order, of a notification that names none',
  'notifications.maxMembers':
    'members a notification may name one by one (`to.tags` and `to.rooms` reach more)',
  'notifications.maxScheduleDays': 'how far ahead `sendAt` may be',
  'invites.perHour':
    'invites a member may send per hour, over every node (then 429 with `Retry-After`; 0: no limit); each one to a phone without an account costs a text',
  shutdownTimeoutMs: 'longest graceful stop before the node exits anyway',
};

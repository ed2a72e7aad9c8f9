import { connect as tcp, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, useTestNode } from '../../helpers/node.ts';
import { figures } from '../chaos.ts';

/**
 * http.maxBodyBytes holds however the body comes: a Content-Length over it gets 413 before a
 * byte of the body is read, and a chunked body (no length) gets 413 once it passes the limit;
 * either way the node closes the connection rather than keep reading what the client sends.
 */

const LIMIT = 4096;
const ROUTES = ['/v1/rooms', '/v1/rooms/limits/messages', '/twilio/sms'];

describe('body limits', () => {
  const node = useTestNode({
    name: 'limits',
    overrides: {
      http: { maxBodyBytes: LIMIT },
      twilio: {
        accountSid: `AC${'0'.repeat(32)}`,
        authToken: 'token',
        apiUrl: 'http://127.0.0.1:9',
      },
    },
  });

  it.each(ROUTES)(
    'POST %s with a Content-Length over the limit: 413 at once, body unread, connection closed',
    async (path) => {
      const declared = 100 * 1024 * 1024;
      const conn = await open(node().url);
      conn.socket.write(head(path, { 'content-length': String(declared) }));
      // One small piece of the 100 MiB promised: the answer must not wait for the rest.
      conn.socket.write('{"body":"');
      const answer = await conn.answer;
      const closed = await conn.closed;
      figures('body limit (Content-Length)', {
        path,
        declared,
        status: answer.status,
        'answered-after': `${answer.ms}ms`,
        'closed-after': `${closed.ms}ms`,
      });
      expect(answer.status).toBe(413);
      expect(answer.contentType).toBe('application/problem+json');
      expect(JSON.parse(answer.body)).toMatchObject({ status: 413, code: 'payload_too_large' });
    },
  );

  it.each(ROUTES)(
    'POST %s chunked past the limit: 413 once the limit is passed, then the node stops reading',
    async (path) => {
      const conn = await open(node().url);
      conn.socket.write(head(path, { 'transfer-encoding': 'chunked' }));
      const chunk = Buffer.alloc(1024, 0x61);
      const frame = Buffer.concat([
        Buffer.from(`${chunk.length.toString(16)}\r\n`),
        chunk,
        Buffer.from('\r\n'),
      ]);
      // Keep sending, as a hostile client would, until the node closes (at most 64 MiB).
      let sent = 0;
      let sentAtAnswer = -1;
      void conn.answer.then(() => {
        sentAtAnswer = sent;
      });
      const cap = 64 * 1024 * 1024;
      while (!conn.socket.destroyed && !conn.isClosed() && sent < cap) {
        if (!conn.socket.write(frame)) {
          await Promise.race([
            new Promise((r) => conn.socket.once('drain', r)),
            conn.closed,
            new Promise((r) => setTimeout(r, 200)),
          ]);
        }
        sent += chunk.length;
      }
      const answer = await conn.answer;
      await conn.closed;
      figures('body limit (chunked)', {
        path,
        limit: LIMIT,
        status: answer.status,
        'answered-after-bytes': sentAtAnswer,
        'closed-after-bytes': sent,
      });
      expect(answer.status).toBe(413);
      expect(answer.contentType).toBe('application/problem+json');
      expect(sentAtAnswer).toBeGreaterThan(LIMIT);
      // The node closed the connection long before the client gave up (socket buffers aside).
      expect(sent).toBeLessThan(cap);
    },
  );
});

function head(path: string, headers: Record<string, string>): string {
  const lines = [
    `POST ${path} HTTP/1.1`,
    'host: 127.0.0.1',
    `authorization: Bearer ${ADMIN_TOKEN}`,
    'content-type: application/json',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  return `${lines.join('\r\n')}\r\n\r\n`;
}

interface Answer {
  status: number;
  contentType: string;
  body: string;
  ms: number;
}

/** A raw TCP connection that resolves `answer` once a whole HTTP answer has arrived. */
async function open(url: string) {
  const { hostname, port } = new URL(url);
  const socket: Socket = tcp({ host: hostname, port: Number(port) });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => {});
  const start = Date.now();
  let received = '';
  let closed = false;
  const answer = new Promise<Answer>((resolve, reject) => {
    socket.on('data', (d: Buffer) => {
      received += d.toString('utf8');
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = Number(/content-length:\s*(\d+)/i.exec(received.slice(0, end))?.[1] ?? 0);
      if (received.length - end - 4 < length) return;
      resolve({
        status: Number(received.slice(9, 12)),
        contentType: /content-type:\s*([^\r\n;]+)/i.exec(received)?.[1] ?? '',
        body: received.slice(end + 4, end + 4 + length),
        ms: Date.now() - start,
      });
    });
    socket.once('close', () => reject(new Error(`closed without an answer: ${received}`)));
  });
  const closedAt = new Promise<{ ms: number }>((resolve) => {
    const done = () => {
      closed = true;
      resolve({ ms: Date.now() - start });
    };
    socket.once('end', done);
    socket.once('close', done);
  });
  return { socket, answer, closed: closedAt, isClosed: () => closed };
}

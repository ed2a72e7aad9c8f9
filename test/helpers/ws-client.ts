import type { IncomingHttpHeaders } from 'node:http';
import { onTestFinished } from 'vitest';
import { type ClientOptions, WebSocket } from 'ws';

/** A server frame as parsed JSON (a non-JSON frame is kept as `{ type: '<text>', raw }`). */
export type Frame = { type: string; [field: string]: unknown };

/** The HTTP answer to an upgrade the server refused (ws's 'unexpected-response'). */
export class UpgradeRefusedError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
    readonly headers: IncomingHttpHeaders = {},
  ) {
    super(`WebSocket upgrade refused with HTTP ${status}: ${body}`);
    this.name = 'UpgradeRefusedError';
  }
}

const notPresence = (f: Frame) => f.type !== 'presence';

export interface Closed {
  code: number;
  reason: string;
}

/**
 * A promise-based test client. Frames are collected from the moment the socket opens;
 * `next()` reads them in order through a cursor, so a frame that arrived before `next()`
 * was called is never missed.
 */
export class TestClient {
  /** Every frame after the `welcome` one, in order. */
  readonly frames: Frame[] = [];
  /** The server's first frame: `{"type":"welcome","member","rooms":[…]}`. */
  readonly welcome: Promise<Frame>;
  private welcomed: ((frame: Frame) => void) | undefined;
  /** Resolves when the socket closes, with the close code and reason the client saw. */
  readonly closed: Promise<Closed>;
  private cursor = 0;
  private waiters = new Set<() => void>();
  private closeInfo: Closed | undefined;

  constructor(readonly ws: WebSocket) {
    this.welcome = new Promise((resolve) => {
      this.welcomed = resolve;
    });
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? '' : data.toString();
      let frame: Frame;
      try {
        frame = JSON.parse(text) as Frame;
      } catch {
        frame = { type: '<text>', raw: text };
      }
      if (this.welcomed && frame.type === 'welcome') {
        this.welcomed(frame);
        this.welcomed = undefined;
        return;
      }
      this.frames.push(frame);
      this.notify();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        resolve(this.closeInfo);
        this.notify();
      });
    });
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  send(obj: unknown): void {
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  }

  /**
   * The next frame (after the last one `next`/`take` returned) that matches; with no
   * predicate, the next one that is not a `presence` frame (members of the client's rooms
   * coming and going, which tests about something else do not expect).
   */
  async next(predicate: (f: Frame) => boolean = notPresence, timeoutMs = 5_000): Promise<Frame> {
    const [frame] = await this.take(1, predicate, timeoutMs);
    return frame as Frame;
  }

  /** The next `count` matching frames; non-matching frames in between are skipped. */
  take(count: number, predicate: (f: Frame) => boolean = notPresence, timeoutMs = 5_000) {
    const found: Frame[] = [];
    return new Promise<Frame[]>((resolve, reject) => {
      const check = () => {
        while (found.length < count && this.cursor < this.frames.length) {
          const frame = this.frames[this.cursor++] as Frame;
          if (predicate(frame)) found.push(frame);
        }
        if (found.length >= count) {
          finish();
          resolve(found);
        } else if (this.closeInfo) {
          finish();
          reject(
            new Error(
              `socket closed (${this.closeInfo.code} ${this.closeInfo.reason}) after ${found.length} of ${count} frames`,
            ),
          );
        }
      };
      const timer = setTimeout(() => {
        finish();
        const tail = this.frames.slice(-3).map((f) => JSON.stringify(f).slice(0, 200));
        reject(
          new Error(
            `timed out after ${timeoutMs} ms with ${found.length} of ${count} frames; last frames: ${tail.join(' ')}`,
          ),
        );
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Sends a close frame and waits for the close handshake (or terminates after 2 s). */
  async close(code = 1000, reason = ''): Promise<Closed> {
    if (this.ws.readyState === WebSocket.CLOSED) return this.closed;
    this.ws.close(code, reason);
    const timer = setTimeout(() => this.ws.terminate(), 2_000);
    try {
      return await this.closed;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Drops the connection without a close handshake. */
  terminate(): void {
    this.ws.terminate();
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }
}

/**
 * Opens a WebSocket to `url` with `?token=`; rejects with an {@link UpgradeRefusedError}
 * carrying the HTTP status when the server refuses the upgrade. `options` go to ws (an
 * `origin`, say). Inside a test, the socket is terminated when the test finishes.
 */
export function connect(
  url: string,
  token?: string,
  timeoutMs = 5_000,
  options?: ClientOptions,
): Promise<TestClient> {
  const target = token === undefined ? url : `${url}?token=${encodeURIComponent(token)}`;
  const ws = new WebSocket(target, options);
  try {
    onTestFinished(() => ws.terminate());
  } catch {
    // Outside a test: the caller closes it.
  }
  const client = new TestClient(ws);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`WebSocket ${url} did not open within ${timeoutMs} ms`));
    }, timeoutMs);
    ws.once('open', () => {
      clearTimeout(timer);
      resolve(client);
    });
    ws.once('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        body += chunk;
      });
      res.on('end', () => {
        reject(new UpgradeRefusedError(res.statusCode ?? 0, body, res.headers));
        // Still CONNECTING: terminate() aborts the request and emits 'close'.
        ws.terminate();
      });
    });
    ws.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

import type { Server } from 'node:http';
import { type ServerType, serve } from '@hono/node-server';
import { ConfigError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { answerClientError } from './problem.ts';
import type { WebSocketEndpoint } from './websocket.ts';

/**
 * The node's HTTP and WebSocket listener. `start` binds the port (a taken one is a
 * ConfigError naming it); `drain` stops taking requests and connections: WebSocket clients
 * are told to go (1001), idle keep-alive sockets close, and after a grace period whatever
 * still hangs on is cut, so a peer that never finishes its close cannot hold the node.
 */
export class HttpServer {
  readonly name = 'http';
  private server: ServerType | undefined;
  private draining: Promise<void> | undefined;
  port = 0;

  constructor(
    private readonly fetch: (req: Request) => Response | Promise<Response>,
    private readonly ws: WebSocketEndpoint,
    private readonly options: { host: string; port: number; graceMs: number },
    private readonly log: Logger,
  ) {}

  get isDraining(): boolean {
    return this.draining !== undefined;
  }

  async start(): Promise<void> {
    const { host, port } = this.options;
    this.server = await listen(this.fetch, host, port);
    this.ws.inject(this.server);
    const address = this.server.address();
    this.port = typeof address === 'object' && address ? address.port : port;
  }

  drain(): Promise<void> {
    this.draining ??= (async () => {
      const server = this.server;
      this.ws.closeAll();
      this.ws.stop();
      if (!server) return;
      const closed = new Promise<void>((r) => server.close(() => r()));
      const timer = setTimeout(() => {
        this.log.warn('connections still open after the grace period; closing them');
        this.ws.terminateAll();
        (server as Server).closeAllConnections?.();
      }, this.options.graceMs);
      await closed;
      clearTimeout(timer);
    })();
    return this.draining;
  }

  stop(): Promise<void> {
    return this.drain();
  }
}

function listen(
  fetch: (req: Request) => Response | Promise<Response>,
  hostname: string,
  port: number,
): Promise<ServerType> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch, hostname, port }, () => resolve(server));
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE')
        reject(
          // A ConfigError: the CLI prints it as one line, no stack trace.
          new ConfigError(
            'port',
            `port ${port} is in use on ${hostname}: stop what uses it or pass --port`,
          ),
        );
      else reject(err);
    });
    server.on('clientError', answerClientError);
  });
}

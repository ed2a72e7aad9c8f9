import type { Logger } from './log.ts';
import { within } from './within.ts';

/** A part of a node with a lifecycle (the Redis connections, the HTTP server, the readers…). */
export interface Service {
  readonly name: string;
  start(): void | Promise<void>;
  stop(): void | Promise<void>;
}

/**
 * Starts services in order and stops them in reverse (as Centrifugo's service manager): a
 * service is started only once those before it are, and stopped only after those after it.
 * A failed start stops what had started. The whole stop is bounded by `timeoutMs`: a service
 * that hangs is left behind, logged, and the ones before it still stop.
 */
export class ServiceManager {
  private readonly started: Service[] = [];

  private readonly services: Service[] = [];

  constructor(private readonly log: Logger) {}

  /** Adds services to start, in order, after those added before. */
  add(...services: Service[]): void {
    this.services.push(...services);
  }

  /** A service the node had to start before building the others (Redis, the listener). */
  adopt(service: Service): void {
    this.started.push(service);
  }

  async start(): Promise<void> {
    for (const service of this.services) {
      try {
        await service.start();
      } catch (err) {
        await this.stop(5_000);
        throw err;
      }
      this.started.push(service);
    }
  }

  async stop(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const service of this.started.splice(0).reverse()) {
      const stopping = Promise.resolve()
        .then(() => service.stop())
        .catch((err: unknown) =>
          this.log.warn({ err, service: service.name }, 'service failed to stop cleanly'),
        );
      if ((await within(stopping, deadline - Date.now())) === 'late')
        this.log.warn(
          { service: service.name },
          'service did not stop in time (shutdownTimeoutMs); going on',
        );
    }
  }
}

import type { ChainableCommander } from 'ioredis';
import type { Envelope } from '../funnel/envelope.ts';
import type { Keys } from '../redis/keys.ts';

/** What the owner of a room tells the node that accepted a message (DESIGN §3, `thr:node:<id>`). */
export interface Receipt {
  id: string;
  room: string;
  status: 'committed' | 'duplicate' | 'rejected';
  seq?: number;
  recipients?: number;
  code?: string;
  message?: string;
}

/** A receipt and where its message was accepted. */
export interface RoutedReceipt {
  origin: Envelope['origin'];
  receipt: Receipt;
}

export interface Waiter {
  promise: Promise<Receipt>;
  cancel(): void;
}

/**
 * Routes receipts back to the node that accepted the message, and on that node to whoever
 * waits for it (a `?wait=1` request, a WebSocket `ack`). Waiters register before the XADD,
 * so a commit can never beat its own waiter.
 */
export class Receipts {
  private readonly waiters = new Map<string, Set<(r: Receipt) => void>>();

  constructor(
    private readonly nodeId: string,
    private readonly keys: Keys,
  ) {}

  get waiting(): number {
    return this.waiters.size;
  }

  /** Waits for the receipt of an envelope id; rejects with `onTimeout()` after timeoutMs. */
  wait(id: string, timeoutMs: number, onTimeout: () => Error): Waiter {
    let settle!: (r: Receipt) => void;
    let timer: NodeJS.Timeout;
    const promise = new Promise<Receipt>((resolve, reject) => {
      settle = (r) => {
        clearTimeout(timer);
        resolve(r);
      };
      timer = setTimeout(() => {
        this.remove(id, settle);
        reject(onTimeout());
      }, timeoutMs);
    });
    const set = this.waiters.get(id) ?? new Set();
    this.waiters.set(id, set);
    set.add(settle);
    return {
      promise,
      cancel: () => {
        clearTimeout(timer);
        this.remove(id, settle);
      },
    };
  }

  /**
   * Delivers those for messages we accepted, and queues on `pipe` one PUBLISH per other node
   * that accepted some: a JSON array of its receipts (one message per batch, not per receipt).
   */
  route(routed: readonly RoutedReceipt[], pipe: ChainableCommander): void {
    const byNode = new Map<string, Receipt[]>();
    for (const { origin, receipt } of routed) {
      if (origin.node === this.nodeId) {
        this.deliver(receipt);
        continue;
      }
      const list = byNode.get(origin.node);
      if (list) list.push(receipt);
      else byNode.set(origin.node, [receipt]);
    }
    for (const [node, list] of byNode)
      pipe.publish(this.keys.nodeChannel(node), JSON.stringify(list));
  }

  /** What a node channel message holds: an array of receipts (or, from older nodes, one). */
  deliverPayload(payload: string): void {
    const parsed = JSON.parse(payload) as Receipt | Receipt[];
    for (const receipt of Array.isArray(parsed) ? parsed : [parsed]) this.deliver(receipt);
  }

  /** A receipt for this node: from our own commits or from our node channel. */
  deliver(receipt: Receipt): void {
    const set = this.waiters.get(receipt.id);
    if (!set) return;
    this.waiters.delete(receipt.id);
    for (const settle of set) settle(receipt);
  }

  private remove(id: string, settle: (r: Receipt) => void) {
    const set = this.waiters.get(id);
    set?.delete(settle);
    if (set?.size === 0) this.waiters.delete(id);
  }
}

import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';

/** The part of a WebSocket the session uses (ws's WebSocket satisfies it). */
export interface SocketLike {
  send(data: string): void;
  /** Live frames are Buffers holding UTF-8 JSON, sent as text frames (`binary: false`). */
  send(data: Buffer, options: { binary: boolean }): void;
  close(code: number, reason: string): void;
  readonly bufferedAmount: number;
}

/**
 * A WebSocket whose frames sent within one tick reach the kernel in one write. The live hub
 * hands every message of a Redis read to the sessions synchronously, so under load a session
 * gets several frames per tick; sent one by one, each was a writev syscall of its own, about
 * half of a node's CPU under room fan-out (see README, Performance).
 */
export function corkedSocket(ws: WebSocket): SocketLike {
  // ws keeps its TCP socket in `_socket` (no public accessor); without one, no corking.
  const socket = (ws as unknown as { _socket?: Socket })._socket;
  let corked = false;
  const uncork = () => {
    corked = false;
    socket?.uncork();
  };
  const send = (data: string | Buffer, options?: { binary: boolean }) => {
    if (socket && !corked) {
      corked = true;
      socket.cork();
      process.nextTick(uncork);
    }
    if (options) ws.send(data, options);
    else ws.send(data);
  };
  return {
    send,
    close: (code, reason) => ws.close(code, reason),
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
  };
}

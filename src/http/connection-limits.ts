import { ConnectionLimitError } from '../errors.ts';

export interface ConnectionLimitOptions {
  /** Open WebSocket connections per peer address on this node (0: no limit). */
  perIp: number;
  /** Open WebSocket connections per member on this node (0: no limit). */
  perMember: number;
}

/**
 * Counts this node's WebSocket connections per peer address and per member. A slot is taken
 * before the upgrade (so a burst of handshakes cannot overshoot the cap) and given back once
 * the connection's socket closes, however it ends.
 */
export class ConnectionLimits {
  private readonly byIp = new Map<string, number>();
  private readonly byMember = new Map<string, number>();

  constructor(private readonly options: ConnectionLimitOptions) {}

  /**
   * Takes a slot for a connection from `ip` as `member`, or throws ConnectionLimitError (429,
   * `too_many_connections`) naming the limit. The returned function gives the slot back (once).
   */
  acquire(ip: string, member: string | undefined): () => void {
    const { perIp, perMember } = this.options;
    if (perIp > 0 && (this.byIp.get(ip) ?? 0) >= perIp) {
      throw new ConnectionLimitError(
        `${ip} already has ${perIp} WebSocket connections to this node (ws.maxConnectionsPerIp); close one or retry later`,
        'ip_limit',
      );
    }
    if (member !== undefined && perMember > 0 && (this.byMember.get(member) ?? 0) >= perMember) {
      throw new ConnectionLimitError(
        `${member} already has ${perMember} WebSocket connections to this node (ws.maxConnectionsPerMember); close one or retry later`,
        'member_limit',
      );
    }
    bump(this.byIp, ip, 1);
    if (member !== undefined) bump(this.byMember, member, 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      bump(this.byIp, ip, -1);
      if (member !== undefined) bump(this.byMember, member, -1);
    };
  }
}

function bump(counts: Map<string, number>, key: string, by: number): void {
  const n = (counts.get(key) ?? 0) + by;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}

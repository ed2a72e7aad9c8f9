/** An error frame from the server, a refused connection, or a publish cut short by close(). */
export class ThresholdClientError extends Error {
  override readonly name = 'ThresholdClientError';
  constructor(
    /**
     * The server's error code (`forbidden`, `not_found`, …), or the client's own: `revoked`
     * (closed with 4001), `closed` (close() was called), `connect` (no node answered),
     * `handler` (a subscription's handler threw).
     */
    readonly code: string,
    message: string,
    readonly details: { room?: string; id?: string; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, { cause: details.cause });
  }
}

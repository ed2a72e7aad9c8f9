/**
 * The client's own pings: a connection that brings no frame back within one interval is
 * declared dead, since a dead peer's socket may take half a minute to close by itself.
 */
export class Heartbeat {
  private timer: ReturnType<typeof setInterval> | undefined;
  private heardSincePing = true;

  constructor(
    /** 0 or less turns pinging off. */
    private readonly intervalMs: number,
    private readonly ping: () => void,
    private readonly dead: () => void,
  ) {}

  start(): void {
    if (this.intervalMs <= 0) return;
    this.heardSincePing = true;
    this.timer = setInterval(() => {
      if (!this.heardSincePing) return this.dead();
      this.heardSincePing = false;
      this.ping();
    }, this.intervalMs);
  }

  /** Any frame from the server counts as an answer. */
  heard(): void {
    this.heardSincePing = true;
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}

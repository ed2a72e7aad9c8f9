/**
 * Progress of a long operation (`threshold cluster`, `npm run bench`) on stderr, so stdout
 * keeps only what a program may parse. On a terminal: one line that updates in place,
 * `[2/3] starting 3 relay nodes: node-2 (4 s)`; elsewhere (a pipe, a log file, CI): a plain
 * line per step or detail.
 */

export interface ProgressOptions {
  /** Steps in all, when known: steps are shown as `[n/total]`. */
  total?: number;
  /** @default process.stderr */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** One updating line instead of a line per change. @default stream.isTTY */
  tty?: boolean;
  /** How often the updating line's elapsed time moves. @default 1000 */
  tickMs?: number;
}

/** Erases the terminal's current line and returns to its start. */
const CLEAR = '\r\x1b[2K';

export class Progress {
  private readonly stream: NodeJS.WritableStream;
  private readonly tty: boolean;
  private readonly total: number | undefined;
  private readonly tickMs: number;
  private steps = 0;
  private label = '';
  private detail = '';
  private since = Date.now();
  private timer: NodeJS.Timeout | undefined;

  constructor(options: ProgressOptions = {}) {
    const stream = options.stream ?? process.stderr;
    this.stream = stream;
    this.tty = options.tty ?? Boolean(stream.isTTY);
    this.total = options.total;
    this.tickMs = options.tickMs ?? 1000;
  }

  /** Starts the next step. */
  step(label: string): void {
    this.steps++;
    this.label = label;
    this.detail = '';
    this.since = Date.now();
    this.show();
  }

  /** Says how the current step is going (`2/3 ready`) without starting another. */
  update(detail: string): void {
    if (detail === this.detail) return;
    this.detail = detail;
    this.show();
  }

  /** Writes a line of other output (stdout by default) without tearing the progress line. */
  print(line: string, out: NodeJS.WritableStream = process.stdout): void {
    if (!this.tty || this.steps === 0) {
      out.write(`${line}\n`);
      return;
    }
    this.stream.write(CLEAR);
    out.write(`${line}\n`);
    this.stream.write(this.line());
  }

  /** Clears the updating line; the steps are over. */
  done(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.tty && this.steps > 0) this.stream.write(CLEAR);
  }

  private line(): string {
    const of = this.total === undefined ? '' : `/${this.total}`;
    const detail = this.detail ? `: ${this.detail}` : '';
    const seconds = Math.floor((Date.now() - this.since) / 1000);
    const elapsed = this.tty && seconds > 0 ? ` (${seconds} s)` : '';
    return `[${this.steps}${of}] ${this.label}${detail}${elapsed}`;
  }

  private show(): void {
    if (!this.tty) {
      this.stream.write(`${this.line()}\n`);
      return;
    }
    this.stream.write(CLEAR + this.line());
    if (!this.timer) {
      this.timer = setInterval(() => this.stream.write(CLEAR + this.line()), this.tickMs);
      // Progress never keeps a process alive.
      this.timer.unref();
    }
  }
}

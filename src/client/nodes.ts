/** Which node a connection goes to: asked of the nodes in turn, wary of a socket that failed. */
import type { ClientOptions } from './types.ts';

export class NodeChooser {
  private readonly urls: string[];
  private readonly fetchImpl: typeof fetch;
  private readonly token: ClientOptions['token'];
  private readonly member: string | undefined;
  private nextUrl = 0;
  /** The socket URL that last failed: a `/v1/connect` answer naming it again is not trusted. */
  private failedWsUrl: string | undefined;

  constructor(
    options: Pick<ClientOptions, 'url' | 'urls' | 'token' | 'member' | 'fetch'>,
    private readonly connectTimeoutMs: number,
  ) {
    this.urls = (options.urls ?? (options.url ? [options.url] : [])).map((u) =>
      u.replace(/\/+$/, ''),
    );
    if (this.urls.length === 0) throw new TypeError('ThresholdClient: give url or urls');
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.token = options.token;
    this.member = options.member;
  }

  /** The socket at `url` failed (or never opened): the next choice should not go straight back. */
  failed(url: string): void {
    this.failedWsUrl = url;
  }

  /** A socket opened: whatever failed before may be chosen again. */
  opened(): void {
    this.failedWsUrl = undefined;
  }

  /**
   * Asks each base URL in turn, starting after the one that answered last time, which node to
   * use. A node named again right after its socket failed (it died and the mesh has not noticed
   * yet) is passed over for the answering node itself. Resolves with the socket URL, query
   * (token, member) included.
   */
  async choose(): Promise<string> {
    const query = await this.query();
    let lastError: unknown;
    for (let i = 0; i < this.urls.length; i++) {
      const index = (this.nextUrl + i) % this.urls.length;
      const base = this.urls[index]!;
      try {
        const res = await this.fetchImpl(`${base}/v1/connect`, {
          signal: AbortSignal.timeout(this.connectTimeoutMs),
        });
        if (!res.ok) throw new Error(`GET ${base}/v1/connect: HTTP ${res.status}`);
        const { url } = (await res.json()) as { url: string };
        this.nextUrl = index;
        const ws = url === this.failedWsUrl ? ownSocketUrl(base) : url;
        return ws + query;
      } catch (err) {
        lastError = err;
      }
    }
    // No node answered /v1/connect: try the next base URL's socket directly.
    const base = this.urls[this.nextUrl]!;
    this.nextUrl = (this.nextUrl + 1) % this.urls.length;
    if (ownSocketUrl(base) === this.failedWsUrl) throw lastError;
    return ownSocketUrl(base) + query;
  }

  private async query(): Promise<string> {
    const params = new URLSearchParams();
    const token = typeof this.token === 'function' ? await this.token() : this.token;
    if (token) params.set('token', token);
    if (this.member) params.set('member', this.member);
    const q = params.toString();
    return q ? `?${q}` : '';
  }
}

/** `http(s)://host` → `ws(s)://host/v1/ws`: the node's own socket. */
function ownSocketUrl(base: string): string {
  return `${base.replace(/^http/, 'ws')}/v1/ws`;
}

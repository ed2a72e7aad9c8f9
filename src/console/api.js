import { h } from 'preact';
import htm from 'htm';

export const html = htm.bind(h);

/** Colours for series and nodes, in order (charts' lines, the mesh's nodes). */
export const PALETTE = [
  '#2f7bbf',
  '#3a9a5b',
  '#b07d18',
  '#7a55b5',
  '#c0392b',
  '#16a085',
  '#d35400',
  '#555',
];

// The console's only way to the node: fetch with the admin credential as a bearer header, and
// a WebSocket that offers it as a subprotocol. The credential is never put in a URL.

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail ?? problem?.title ?? `HTTP ${status}`);
    this.status = status;
    this.code = problem?.code;
  }
}

export function createApi(token) {
  const request = async (method, path, body) => {
    // No token: open development mode (no secrets, loopback), where the node asks for none.
    const headers = token ? { authorization: `Bearer ${token}` } : {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
    const text = await res.text();
    const json = text ? JSON.parse(text) : undefined;
    if (!res.ok) throw new ApiError(res.status, json);
    return json;
  };
  return {
    get: (path) => request('GET', path),
    post: (path, body) => request('POST', path, body),
    /** A WebSocket to this node; the token travels as the `bearer.<base64url>` subprotocol. */
    socket() {
      const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`;
      return new WebSocket(url, token ? ['threshold', `bearer.${base64url(token)}`] : []);
    },
  };
}

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Calls `fn` now and every `ms` while mounted; returns the cleanup for useEffect. */
export function every(ms, fn) {
  let stopped = false;
  let timer;
  const tick = async () => {
    try {
      await fn();
    } finally {
      if (!stopped) timer = setTimeout(tick, ms);
    }
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

export const ago = (ms) =>
  ms == null ? '–' : ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
export const time = (ms) => new Date(ms).toLocaleTimeString();

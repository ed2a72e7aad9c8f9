import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import type { AppEnv } from '../../src/http/app.ts';
import { mountConsole } from '../../src/http/console-routes.ts';

function app() {
  const hono = new Hono<AppEnv>();
  mountConsole(hono);
  return hono;
}

describe('GET /console', () => {
  it('serves the page uncached, under a CSP that allows its own scripts and its import map only', async () => {
    const res = await app().request('/console');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toMatch(/default-src 'self'/);
    expect(csp).toMatch(/script-src 'self' 'sha256-[A-Za-z0-9+/]+=*'/);
    expect(csp).not.toMatch(/unsafe-(inline|eval)/);
    const html = await res.text();
    expect(html).toContain('<script type="importmap">');
    // Everything from this node: no CDN.
    expect(html).not.toMatch(/(src|href)="https?:/);
  });

  it('serves its modules and the vendored preact, htm and uPlot, and nothing else', async () => {
    for (const path of [
      '/console/app.js',
      '/console/console.css',
      '/console/vendor/preact.mjs',
      '/console/vendor/hooks.mjs',
      '/console/vendor/htm.mjs',
      '/console/vendor/uPlot.esm.js',
      '/console/vendor/uPlot.min.css',
    ]) {
      const res = await app().request(path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type'), path).toMatch(/^text\/(javascript|css)/);
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    }
    expect((await app().request('/console/../package.json')).status).toBe(404);
    expect((await app().request('/console/vendor/../../src/node.ts')).status).toBe(404);
    expect((await app().request('/console/index.html')).status).toBe(404);
  });
});

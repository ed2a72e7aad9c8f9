import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Hono } from 'hono';
import type { AppEnv } from './app.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const CONSOLE_DIR = join(HERE, '..', 'console');
const require = createRequire(import.meta.url);
/** The console's dependencies, served from node_modules (no CDN: a node may have no internet). */
const VENDOR: Record<string, () => string> = {
  'preact.mjs': () => join(dirname(require.resolve('preact')), 'preact.mjs'),
  'hooks.mjs': () => join(dirname(require.resolve('preact/hooks')), 'hooks.mjs'),
  'htm.mjs': () => join(dirname(require.resolve('htm')), 'htm.mjs'),
  'uPlot.esm.js': () => join(dirname(require.resolve('uplot')), 'uPlot.esm.js'),
  'uPlot.min.css': () => join(dirname(require.resolve('uplot')), 'uPlot.min.css'),
};
const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

interface Asset {
  body: string;
  type: string;
}

/**
 * `GET /console`: the web console, plain ES modules (preact + htm, uPlot) with no build step.
 * The page holds the admin credential in memory only and sends it as a bearer header; the
 * one inline script is the import map, allowed by its hash in the CSP.
 */
export function mountConsole(app: Hono<AppEnv>): void {
  let assets: Map<string, Asset> | undefined;
  let page: { html: string; csp: string } | undefined;
  const load = () => {
    if (assets) return assets;
    assets = new Map();
    for (const name of readdirSync(CONSOLE_DIR))
      if (name !== 'index.html' && TYPES[extname(name)])
        assets.set(name, {
          body: readFileSync(join(CONSOLE_DIR, name), 'utf8'),
          type: TYPES[extname(name)]!,
        });
    for (const [name, path] of Object.entries(VENDOR))
      assets.set(`vendor/${name}`, {
        body: readFileSync(path(), 'utf8'),
        type: TYPES[extname(name)]!,
      });
    return assets;
  };
  const index = () => {
    if (page) return page;
    const html = readFileSync(join(CONSOLE_DIR, 'index.html'), 'utf8');
    const map = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html)?.[1] ?? '';
    const hash = createHash('sha256').update(map).digest('base64');
    const csp = [
      "default-src 'self'",
      `script-src 'self' 'sha256-${hash}'`,
      "style-src 'self'",
      "img-src 'self' data:",
      "connect-src 'self'",
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join('; ');
    page = { html, csp };
    return page;
  };
  const common = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' };

  app.get('/console', (c) => {
    const { html, csp } = index();
    return c.body(html, 200, {
      ...common,
      'content-type': TYPES['.html']!,
      'cache-control': 'no-store',
      'content-security-policy': csp,
    });
  });
  app.get('/console/*', (c) => {
    const name = c.req.path.slice('/console/'.length);
    if (name === '') return c.redirect('/console', 301);
    const asset = load().get(name);
    if (!asset) return c.notFound();
    return c.body(asset.body, 200, {
      ...common,
      'content-type': asset.type,
      'cache-control': 'no-cache',
    });
  });
}

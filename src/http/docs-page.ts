/**
 * `GET /docs`: the API reference, rendered in the browser from /openapi.json. Self-contained
 * (no CDN: a node may have no internet), and plain enough to read rather than a Swagger UI.
 */
export const DOCS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Threshold API</title>
<style>
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 960px; padding: 1rem 1.5rem; color: #222; }
  h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; margin-top: 2rem; text-transform: capitalize; }
  details { border: 1px solid #e3e3e3; border-radius: 4px; margin: .4rem 0; }
  summary { cursor: pointer; padding: .4rem .6rem; display: flex; gap: .6rem; align-items: baseline; }
  .method { font: bold 12px monospace; text-transform: uppercase; min-width: 4.5em; text-align: center; padding: 2px 4px; border-radius: 3px; color: #fff; background: #777; }
  .get { background: #2f7bbf; } .post { background: #3a9a5b; } .put { background: #b07d18; } .patch { background: #7a55b5; } .delete { background: #c0392b; }
  .path { font-family: monospace; font-weight: 600; }
  .access { margin-left: auto; font-size: 12px; color: #666; white-space: nowrap; }
  .body { padding: 0 .8rem .6rem; }
  pre { background: #f6f6f6; padding: .5rem; overflow-x: auto; font-size: 13px; }
  table { border-collapse: collapse; font-size: 14px; } td, th { text-align: left; padding: 2px 10px 2px 0; vertical-align: top; }
  code { font-size: 13px; }
</style>
</head>
<body>
<h1 id="title">Threshold API</h1>
<p id="intro">Loading <a href="openapi.json">openapi.json</a>…</p>
<div id="routes"></div>
<script>
(async () => {
  const el = (tag, attrs = {}, ...children) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    for (const child of children) node.append(child);
    return node;
  };
  // Inline code in summaries and descriptions: \`x\` becomes <code>x</code>, text stays text.
  const text = (s) => {
    const span = el('span');
    String(s ?? '').split('\`').forEach((part, i) => span.append(i % 2 ? el('code', {}, part) : part));
    return span;
  };
  const res = await fetch('openapi.json');
  const doc = await res.json();
  document.getElementById('title').textContent = doc.info.title + ' API ' + doc.info.version;
  const intro = document.getElementById('intro');
  intro.replaceChildren(text(doc.info.description), ' The machine-readable document: ', el('a', { href: 'openapi.json' }, 'openapi.json'), '.');
  const schemes = doc.components.securitySchemes;
  const who = (op) => {
    const names = (op.security ?? []).flatMap((s) => Object.entries(s).map(([k, roles]) => roles.length ? k + ' ' + roles.join(' ') : k));
    return op['x-threshold-access'] + (names.length ? ': ' + names.join(' | ') : '');
  };
  const byTag = new Map((doc.tags ?? []).map((t) => [t.name, []]));
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = op.tags?.[0] ?? 'other';
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push({ path, method, op });
    }
  }
  const routes = document.getElementById('routes');
  for (const [tag, ops] of byTag) {
    routes.append(el('h2', { id: tag }, tag));
    for (const { path, method, op } of ops) {
      const body = el('div', { class: 'body' });
      const params = op.parameters ?? [];
      if (params.length) {
        const table = el('table', {}, el('tr', {}, el('th', {}, 'parameter'), el('th', {}, 'in'), el('th', {}, '')));
        for (const p of params)
          table.append(el('tr', {}, el('td', {}, el('code', {}, p.name + (p.required ? '' : '?'))), el('td', {}, p.in), el('td', {}, text(p.description ?? JSON.stringify(p.schema)))));
        body.append(el('h4', {}, 'Parameters'), table);
      }
      const content = op.requestBody?.content ?? {};
      for (const [type, media] of Object.entries(content))
        body.append(el('h4', {}, 'Body (' + type + ')'), el('pre', {}, JSON.stringify(media.schema, null, 2)));
      const table = el('table');
      for (const [status, r] of Object.entries(op.responses ?? {}))
        if (status !== 'default') table.append(el('tr', {}, el('td', {}, el('code', {}, status)), el('td', {}, text(r.description))));
      body.append(el('h4', {}, 'Responses'), table, el('p', {}, 'Errors: application/problem+json with type, title, status, detail, code and, for bad input, field.'));
      routes.append(
        el('details', { id: op.operationId },
          el('summary', {}, el('span', { class: 'method ' + method }, method), el('span', { class: 'path' }, path), text(op.summary), el('span', { class: 'access' }, who(op))),
          body),
      );
    }
  }
  const auth = el('div', {}, el('h2', { id: 'auth' }, 'Credentials'));
  for (const [name, s] of Object.entries(schemes))
    auth.append(el('p', {}, el('code', {}, name), ': ', s.scheme + (s.bearerFormat ? ' (' + s.bearerFormat + ')' : '') + ' — ', text(s.description)));
  routes.append(auth);
})().catch((err) => { document.getElementById('intro').textContent = 'Could not load openapi.json: ' + err; });
</script>
</body>
</html>
`;

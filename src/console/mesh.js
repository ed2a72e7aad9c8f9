import { useEffect, useState } from 'preact/hooks';
import { ago, every, html, PALETTE } from './api.js';

/** Nodes, their connections, partitions and sources; every partition's lease and lag. */
export function Mesh({ api }) {
  const [state, setState] = useState(null);
  const [error, setError] = useState('');
  useEffect(
    () =>
      every(2000, async () => {
        try {
          setState(await api.get('/v1/cluster'));
          setError('');
        } catch (err) {
          setError(err.message);
        }
      }),
    [api],
  );
  if (!state) return html`<p>${error || 'Loading…'}</p>`;
  const colour = new Map(state.nodes.map((n, i) => [n.id, PALETTE[i % PALETTE.length]]));
  const owned = (id) => state.partitions.filter((o) => o === id).length;
  const leases = state.leases ?? [];
  const held = (id) => leases.filter((l) => l.holder === id).length;
  const sources = Object.entries(state.sources ?? {});
  const totalLag = leases.reduce((sum, l) => sum + (l.lag ?? 0), 0);
  return html`
    <section>
      <h2>Nodes <small>as ${state.node} sees the mesh</small></h2>
      ${error && html`<p class="error">${error}</p>`}
      <table class="nodes">
        <thead>
          <tr>
            <th>Node</th>
            <th>URL</th>
            <th>Connections</th>
            <th>Partitions</th>
            <th>Leases held</th>
            <th>Sources</th>
            <th>Heartbeat</th>
            <th>Version</th>
          </tr>
        </thead>
        <tbody>
          ${state.nodes.map(
            (n) =>
              html`<tr data-node=${n.id}>
                <td>
                  <span class="swatch" style=${{ background: colour.get(n.id) }}></span>
                  <strong>${n.id}</strong>${n.id === state.node ? ' (this node)' : ''}
                </td>
                <td>${n.url}</td>
                <td class="num">${n.connections}</td>
                <td class="num partitions-count">${owned(n.id)}</td>
                <td class="num">${held(n.id)}</td>
                <td>
                  ${
                    sources
                      .filter(([, at]) => at === n.id)
                      .map(([s]) => s)
                      .join(', ') || '–'
                  }
                </td>
                <td>${ago(n.heartbeatAgeMs)} ago</td>
                <td>${n.version}</td>
              </tr>`,
          )}
        </tbody>
      </table>
      ${
        sources.length > 0 &&
        html`<p>
          One-node sources: ${sources.map(([s, at]) => `${s} → ${at ?? 'nobody'}`).join(' · ')}
        </p>`
      }
    </section>
    <section>
      <h2>Partitions <small>${state.partitions.length} · funnel lag ${totalLag}</small></h2>
      <div class="partitions">
        ${state.partitions.map((owner, p) => {
          const lease = leases[p];
          const lag = lease?.lag ?? 0;
          return html`<div
            class=${lag > 0 ? 'partition lagging' : 'partition'}
            style=${{ borderColor: colour.get(owner) ?? '#999' }}
            title=${`partition ${p}: owner ${owner ?? 'none'}, lease ${lease?.holder ?? 'none'}`}
          >
            <div class="pn">${p}</div>
            <div class="owner" style=${{ color: colour.get(owner) ?? '#999' }}>${owner ?? '–'}</div>
            <div class="meta">lease ${ago(lease?.leaseAgeMs)}</div>
            <div class="meta">lag ${lease?.lag ?? '–'} · pend ${lease?.pending ?? '–'}</div>
          </div>`;
        })}
      </div>
      <p class="hint">
        Lease: time since its holder last renewed it. Lag: funnel entries not yet read by the owner;
        pend: read, not yet committed.
      </p>
    </section>
  `;
}

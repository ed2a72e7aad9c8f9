import { useEffect, useState } from 'preact/hooks';
import { every, html } from './api.js';

/** `thr:dead`: what could not commit or be delivered, why, and a way to try it again. */
export function DeadLetters({ api }) {
  const [letters, setLetters] = useState(null);
  const [notice, setNotice] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState('');
  const load = async () => {
    try {
      setLetters((await api.get('/v1/dead-letters?limit=100')).letters);
    } catch (err) {
      setError(err.message);
    }
  };
  useEffect(() => every(5000, load), [api]);
  const requeue = async (letter) => {
    setBusy(letter.id);
    setError('');
    try {
      const r = await api.post(`/v1/dead-letters/${letter.id}/requeue`);
      setNotice(
        r.duplicate
          ? `${letter.id}: committed before; removed from the dead letters.`
          : `${letter.id} requeued into the ${r.to} of partition ${r.partition}.`,
      );
      setLetters((old) => old.filter((l) => l.id !== letter.id));
    } catch (err) {
      setError(`${letter.id}: ${err.message}`);
    } finally {
      setBusy('');
    }
  };
  if (!letters) return html`<p>${error || 'Loading…'}</p>`;
  return html`
    <section>
      <h2>Dead letters <small>${letters.length} newest in thr:dead</small></h2>
      ${notice && html`<p class="notice" role="status">${notice}</p>`}
      ${error && html`<p class="error" role="alert">${error}</p>`}
      ${
        letters.length === 0
          ? html`<p class="meta">No dead letters.</p>`
          : html`<table class="dead">
              <thead>
                <tr>
                  <th>When</th>
                  <th>Kind</th>
                  <th>Reason</th>
                  <th>Room</th>
                  <th>Message</th>
                  <th>Detail</th>
                  <th></th>
                </tr>
              </thead>
              <tbody>
                ${letters.map(
                  (l) =>
                    html`<tr data-dead=${l.id}>
                      <td>${new Date(l.at).toLocaleString()}</td>
                      <td>${l.kind}${l.channel ? ` (${l.channel} → ${l.to})` : ''}</td>
                      <td><span class="badge warn">${l.reason}</span></td>
                      <td>${l.room ?? '–'}</td>
                      <td>
                        <div class="body">${l.body ?? ''}</div>
                        <div class="meta">${l.message ?? ''}</div>
                      </td>
                      <td class="detail">${l.detail}${l.code ? ` (code ${l.code})` : ''}</td>
                      <td>
                        <button disabled=${busy === l.id} onClick=${() => requeue(l)}>
                          Requeue
                        </button>
                      </td>
                    </tr>`,
                )}
              </tbody>
            </table>`
      }
      <p class="hint">
        Requeue puts a message back into its room's funnel (the room must exist; one committed
        before is not committed twice) or a delivery back into its partition's outbox, with fresh
        attempts, then removes the dead letter.
      </p>
    </section>
  `;
}

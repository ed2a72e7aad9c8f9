import { useEffect, useState } from 'preact/hooks';
import { every, html } from './api.js';

/**
 * Notifications have no listing route: this view sends them, follows the ones sent from this
 * page (kept in memory), and looks any other up by id.
 */
export function Notifications({ api }) {
  const [tracked, setTracked] = useState(() => Notifications.tracked);
  const [statuses, setStatuses] = useState({});
  const [error, setError] = useState('');
  const track = (id) => {
    Notifications.tracked = [id, ...Notifications.tracked.filter((t) => t !== id)];
    setTracked(Notifications.tracked);
  };
  useEffect(
    () =>
      every(2000, async () => {
        const next = {};
        for (const id of Notifications.tracked) {
          try {
            next[id] = await api.get(`/v1/notifications/${encodeURIComponent(id)}`);
          } catch (err) {
            next[id] = { id, status: err.status === 404 ? 'unknown' : 'error', error: err.message };
          }
        }
        setStatuses(next);
      }),
    [api, tracked],
  );
  const send = async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const list = (name) =>
      String(form.get(name))
        .split(/[\s,]+/)
        .filter(Boolean);
    const to = {};
    if (list('members').length) to.members = list('members');
    if (list('rooms').length) to.rooms = list('rooms');
    setError('');
    try {
      const r = await api.post('/v1/notifications', { to, body: form.get('body') });
      track(r.id);
      event.target.reset();
    } catch (err) {
      setError(err.message);
    }
  };
  const lookup = (event) => {
    event.preventDefault();
    const id = String(new FormData(event.target).get('id')).trim();
    if (id) track(id);
    event.target.reset();
  };
  return html`
    <section class="forms">
      <form onSubmit=${send}>
        <h2>Send a notification</h2>
        <label>Members <input name="members" placeholder="user:alice, webhook:ops" /></label>
        <label>Rooms <input name="rooms" placeholder="ops, support" /></label>
        <label>Body <input name="body" required /></label>
        <button type="submit">Send</button>
      </form>
      <form onSubmit=${lookup}>
        <h2>Look one up</h2>
        <label>Notification id <input name="id" required /></label>
        <button type="submit">Follow</button>
      </form>
    </section>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <section>
      <h2>Followed in this session</h2>
      ${
        tracked.length === 0
          ? html`<p class="meta">None yet.</p>`
          : html`<table>
              <thead>
                <tr>
                  <th>Id</th>
                  <th>Status</th>
                  <th>Priority</th>
                  <th>Recipients</th>
                  <th>Queued</th>
                  <th>Sent</th>
                  <th>Delivered</th>
                  <th>Failed</th>
                  <th>Sent at</th>
                </tr>
              </thead>
              <tbody>
                ${tracked.map((id) => {
                  const s = statuses[id] ?? { status: '…' };
                  const c = s.counts ?? {};
                  return html`<tr data-notification=${id}>
                    <td><code>${id}</code></td>
                    <td><span class="badge">${s.status}</span></td>
                    <td>${s.priority ?? ''}</td>
                    <td class="num recipients">${s.expansion ?? ''}</td>
                    <td class="num">${c.queued ?? ''}</td>
                    <td class="num">${c.sent ?? ''}</td>
                    <td class="num">${c.delivered ?? ''}</td>
                    <td class="num">${c.failed ?? ''}</td>
                    <td>${s.dispatchedAt ? new Date(s.dispatchedAt).toLocaleTimeString() : ''}</td>
                  </tr>`;
                })}
              </tbody>
            </table>`
      }
    </section>
  `;
}
/** Survives switching views, not a reload (nothing of the session is stored). */
Notifications.tracked = [];

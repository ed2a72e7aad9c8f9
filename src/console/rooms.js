import { useEffect, useRef, useState } from 'preact/hooks';
import { every, html, time } from './api.js';

/** Rooms: search, and one room's settings, members, recent history and live traffic. */
export function Rooms({ api }) {
  const [rooms, setRooms] = useState([]);
  const [query, setQuery] = useState('');
  const [open, setOpen] = useState(null);
  const [error, setError] = useState('');
  useEffect(
    () =>
      every(5000, async () => {
        try {
          setRooms((await api.get('/v1/rooms')).rooms);
        } catch (err) {
          setError(err.message);
        }
      }),
    [api],
  );
  const q = query.trim().toLowerCase();
  const shown = rooms.filter(
    (r) => !q || r.id.includes(q) || (r.name ?? '').toLowerCase().includes(q),
  );
  return html`
    <div class="split">
      <aside>
        <input
          class="search"
          type="search"
          placeholder="Search rooms"
          value=${query}
          onInput=${(e) => setQuery(e.target.value)}
        />
        ${error && html`<p class="error">${error}</p>`}
        <ul class="room-list">
          ${shown.map(
            (r) =>
              html`<li>
                <button
                  class=${open === r.id ? 'room active' : 'room'}
                  data-room=${r.id}
                  onClick=${() => setOpen(r.id)}
                >
                  <strong>${r.id}</strong>
                  <span class="meta">${r.members ?? 0} members · seq ${r.seq}</span>
                </button>
              </li>`,
          )}
        </ul>
        <p class="meta">${shown.length} of ${rooms.length} rooms</p>
      </aside>
      <section class="room-view">
        ${open ? html`<${Room} key=${open} api=${api} id=${open} />` : html`<p>Pick a room.</p>`}
      </section>
    </div>
  `;
}

function Room({ api, id }) {
  const [room, setRoom] = useState(null);
  const [members, setMembers] = useState([]);
  const [messages, setMessages] = useState([]);
  const [live, setLive] = useState('connecting');
  const [error, setError] = useState('');
  const last = useRef(0);
  const list = useRef(null);

  useEffect(() => {
    let socket;
    let closed = false;
    const add = (frames) => {
      const fresh = frames.filter((m) => m.seq > last.current).sort((a, b) => a.seq - b.seq);
      if (fresh.length === 0) return;
      last.current = fresh[fresh.length - 1].seq;
      setMessages((old) => [...old, ...fresh].slice(-200));
    };
    (async () => {
      try {
        const [r, m, page] = await Promise.all([
          api.get(`/v1/rooms/${id}`),
          api.get(`/v1/rooms/${id}/members`),
          api.get(`/v1/rooms/${id}/messages?before=latest&limit=50`),
        ]);
        if (closed) return;
        setRoom(r);
        setMembers(m.members);
        add(page.messages);
      } catch (err) {
        setError(err.message);
        return;
      }
      // Live: subscribe from the last seq shown; the server replays any gap from history.
      socket = api.socket();
      socket.onopen = () =>
        socket.send(JSON.stringify({ type: 'subscribe', room: id, since: last.current }));
      socket.onmessage = (event) => {
        const frame = JSON.parse(event.data);
        if (frame.type === 'subscribed') setLive('live');
        else if (frame.type === 'message' && frame.room === id) add([frame]);
        else if (frame.type === 'error') setError(frame.message);
      };
      socket.onclose = () => !closed && setLive('disconnected (reopen the room)');
    })();
    return () => {
      closed = true;
      socket?.close();
    };
  }, [api, id]);

  useEffect(() => {
    if (list.current) list.current.scrollTop = list.current.scrollHeight;
  }, [messages]);

  return html`
    <h2>
      ${room?.name || id} <small>${id}</small>
      <span class=${live === 'live' ? 'badge ok' : 'badge'} data-live=${live}>${live}</span>
    </h2>
    ${error && html`<p class="error">${error}</p>`}
    ${room && html`<p class="meta">${describe(room, messages.at(-1)?.seq ?? 0)}</p>`}
    <div class="room-body">
      <div class="messages" ref=${list}>
        ${messages.length === 0 && html`<p class="meta">No messages yet.</p>`}
        ${messages.map(
          (m) =>
            html`<div class="message" data-seq=${m.seq}>
              <span class="seq">#${m.seq}</span>
              <span class="when">${time(m.ts)}</span>
              <span class="sender"
                >${m.sender?.kind === 'service' ? m.sender.id : `${m.sender?.kind}:${m.sender?.id}`}</span
              >
              <span class="body">${m.body}</span>
            </div>`,
        )}
      </div>
      <div class="members">
        <h3>Members (${members.length})</h3>
        <ul>
          ${members.map((m) => html`<li>${m}</li>`)}
        </ul>
      </div>
    </div>
  `;
}

function describe(room, lastSeq) {
  const settings = Object.keys(room.settings ?? {}).length
    ? JSON.stringify(room.settings)
    : 'defaults';
  return [
    `seq ${Math.max(room.seq, lastSeq)}`,
    `created ${new Date(room.createdAt).toLocaleString()}`,
    ...(room.numbers?.length ? [`numbers ${room.numbers.join(', ')}`] : []),
    `settings ${settings}`,
  ].join(' · ');
}

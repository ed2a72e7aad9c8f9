import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { createApi, html } from './api.js';
import { Mesh } from './mesh.js';
import { Rooms } from './rooms.js';
import { Charts, startSampling } from './charts.js';
import { DeadLetters } from './dead-letters.js';
import { Notifications } from './notifications.js';

const VIEWS = [
  { id: 'mesh', label: 'Mesh', view: Mesh },
  { id: 'rooms', label: 'Rooms', view: Rooms },
  { id: 'charts', label: 'Throughput', view: Charts },
  { id: 'dead', label: 'Dead letters', view: DeadLetters },
  { id: 'notifications', label: 'Notifications', view: Notifications },
];

/** The credential lives in this component's state only: a reload asks for it again. */
function App() {
  const [api, setApi] = useState(null);
  const [view, setView] = useState(() => location.hash.slice(1) || 'mesh');
  useEffect(() => (api ? startSampling() : undefined), [api]);
  if (!api) return html`<${SignIn} onSignIn=${setApi} />`;
  const go = (id) => {
    history.replaceState(null, '', `#${id}`);
    setView(id);
  };
  const current = VIEWS.find((v) => v.id === view) ?? VIEWS[0];
  return html`
    <header>
      <strong class="brand">Threshold</strong>
      <nav>
        ${VIEWS.map(
          (v) =>
            html`<button
              class=${v.id === current.id ? 'tab active' : 'tab'}
              data-view=${v.id}
              onClick=${() => go(v.id)}
            >
              ${v.label}
            </button>`,
        )}
      </nav>
      <button class="link" onClick=${() => setApi(null)}>Sign out</button>
    </header>
    <main><${current.view} api=${api} /></main>
  `;
}

function SignIn({ onSignIn }) {
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (event) => {
    event.preventDefault();
    const token = new FormData(event.target).get('token').trim();
    setBusy(true);
    setError('');
    const api = createApi(token);
    try {
      await api.get('/v1/cluster');
      onSignIn(api);
    } catch (err) {
      setError(
        err.status === 401
          ? 'Not a valid admin token or API key.'
          : err.status === 403
            ? 'This credential is valid but not an admin one.'
            : `Could not sign in: ${err.message}`,
      );
      setBusy(false);
    }
  };
  return html`
    <form class="signin" onSubmit=${submit}>
      <h1>Threshold console</h1>
      <p>
        Sign in with the admin token (<code>THRESHOLD_ADMIN_TOKEN</code>) or an API key with the
        admin scope (none in open development mode). It is kept in this page's memory only.
      </p>
      <label
        >Admin token or key
        <input name="token" type="password" autocomplete="off" autofocus />
      </label>
      <button type="submit" disabled=${busy}>Sign in</button>
      ${error && html`<p class="error" role="alert">${error}</p>`}
    </form>
  `;
}

const root = document.getElementById('app');
root.textContent = '';
render(html`<${App} />`, root);

import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import { html, PALETTE } from './api.js';

const WINDOW = 150;
const STEP_MS = 2000;

/** `name{a="x",b="y"} 12` lines of one counter → labels joined by " / " → value. */
export function counters(text, name) {
  const values = new Map();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const match = /^[^{\s]+(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = [...(match[1] ?? '').matchAll(/\w+="((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]);
    values.set(labels.join(' / ') || 'all', Number(match[2]));
  }
  return values;
}

const state = { t: [], ingress: new Map(), deliveries: new Map() };
const listeners = new Set();

/**
 * Samples this node's own counters (/metrics) every 2 s into rates per second, from sign-in
 * on (App starts it), so the charts have a history when opened. Returns the stop function.
 */
export function startSampling() {
  let previous;
  let stopped = false;
  let timer;
  const sample = async () => {
    try {
      const text = await (await fetch('/metrics', { cache: 'no-store' })).text();
      const now = Date.now();
      const current = {
        ingress: counters(text, 'threshold_ingress_total'),
        deliveries: counters(text, 'threshold_deliveries_total'),
      };
      if (previous) {
        const seconds = (now - previous.at) / 1000;
        state.t = [...state.t, now / 1000].slice(-WINDOW);
        for (const kind of ['ingress', 'deliveries']) {
          const names = new Set([...current[kind].keys(), ...state[kind].keys()]);
          for (const key of names) {
            const delta = (current[kind].get(key) ?? 0) - (previous[kind].get(key) ?? 0);
            const old = state[kind].get(key) ?? Array(state.t.length - 1).fill(0);
            state[kind].set(key, [...old, Math.max(0, delta / seconds)].slice(-WINDOW));
          }
        }
        for (const listener of listeners) listener({ ...state });
      }
      previous = { at: now, ...current };
    } catch {
      // The node is restarting, or the network hiccupped: the next sample tries again.
    } finally {
      if (!stopped) timer = setTimeout(sample, STEP_MS);
    }
  };
  sample();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

/** Messages/s by source and deliveries/s by channel and outcome, as this node counts them. */
export function Charts() {
  const [series, setSeries] = useState({ ...state });
  useEffect(() => {
    listeners.add(setSeries);
    return () => listeners.delete(setSeries);
  }, []);
  return html`
    <section>
      <h2>Messages/s by source <small>this node's ingress</small></h2>
      <${Chart} id="chart-ingress" t=${series.t} lines=${series.ingress} />
      <h2>Deliveries/s by channel and outcome <small>this node's deliveries</small></h2>
      <${Chart} id="chart-deliveries" t=${series.t} lines=${series.deliveries} />
      <p class="hint">
        Sampled from this node's <a href="/metrics">/metrics</a> every 2 s; other nodes count their
        own (Prometheus sums them).
      </p>
    </section>
  `;
}

function Chart({ id, t, lines }) {
  const box = useRef(null);
  const plot = useRef(null);
  const names = [...lines.keys()].sort();
  // uPlot ranges a single point over years: a chart starts from two samples.
  const shape = t.length < 2 ? '' : names.join('|');
  useEffect(() => {
    plot.current?.destroy();
    plot.current = null;
    if (shape === '') return undefined;
    const width = Math.max(300, box.current.clientWidth);
    plot.current = new uPlot(
      {
        width,
        height: 220,
        series: [
          {},
          ...names.map((name, i) => ({
            label: name,
            stroke: PALETTE[i % PALETTE.length],
            width: 2,
            value: (_, v) => (v == null ? '–' : v.toFixed(1)),
          })),
        ],
        axes: [{}, { label: 'per second', size: 60 }],
        scales: {
          // At least the last 30 s, so a few samples do not stretch over the whole width.
          x: { time: true, range: (_, min, max) => [Math.min(min, max - 30), max] },
          y: { range: (_, min, max) => [0, Math.max(1, max)] },
        },
      },
      [t, ...names.map((n) => lines.get(n))],
      box.current,
    );
    return () => plot.current?.destroy();
  }, [shape]);
  useEffect(() => {
    plot.current?.setData([t, ...names.map((n) => lines.get(n))]);
  }, [t, lines]);
  return html`<div class="chart" id=${id} data-samples=${t.length}>
    <div ref=${box}></div>
    ${
      t.length < 2
        ? html`<p class="meta">Collecting samples…</p>`
        : names.length === 0 && html`<p class="meta">Nothing counted yet.</p>`
    }
  </div>`;
}

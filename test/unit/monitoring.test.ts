/**
 * The alerts (cluster/prometheus/rules.yml) and the Grafana dashboard
 * (cluster/grafana/threshold.json) against the code and promtool: the rules load and pass
 * their unit tests, every query is valid PromQL over series the nodes export, and Grafana's
 * provisioning finds the dashboard and the datasource where the compose file puts them.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { Metrics } from '../../src/metrics/metrics.ts';
import { containerPath, readCompose, ROOT } from '../helpers/compose.ts';

const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');
const tmp = mkdtempSync(join(tmpdir(), 'threshold-monitoring-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs promtool; fails (never skips) when it is missing, since CI installs it. */
function promtool(...args: string[]): { ok: boolean; output: string } {
  const run = spawnSync('promtool', args, { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  if ((run.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT')
    throw new Error(
      'promtool is not installed: run `bash .ci/run`, or install it (`apt-get install prometheus`, or from https://prometheus.io/download/)',
    );
  if (run.error) throw run.error;
  return { ok: run.status === 0, output: `${run.stdout}${run.stderr}` };
}

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
const rules = (
  parse(read('cluster/prometheus/rules.yml')) as { groups: { rules: Rule[] }[] }
).groups.flatMap((g) => g.rules);

interface Target {
  expr?: string;
  refId: string;
  datasource?: { uid?: string };
}
interface Panel {
  id: number;
  title: string;
  type: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
}
const dashboard = JSON.parse(read('cluster/grafana/threshold.json')) as {
  uid: string;
  schemaVersion: number;
  panels: Panel[];
};
const queries = dashboard.panels.flatMap((p) =>
  (p.targets ?? []).map((t) => ({ panel: p, target: t, expr: t.expr ?? '' })),
);

/** Series the nodes export (histograms as their `_bucket`, `_sum`, `_count`), and Prometheus's `up`. */
const exported = new Set(['up']);
for (const m of await new Metrics().registry.getMetricsAsJSON()) {
  if (String(m.type) === 'histogram')
    for (const s of ['_bucket', '_sum', '_count']) exported.add(m.name + s);
  else exported.add(m.name);
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'offset', 'bool', 'inf', 'nan']);
/** The metric names a PromQL expression reads: names not called as functions or aggregations. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  return [...bare.matchAll(/(?<![\w.:])([a-zA-Z_:][\w:]*)(?![\w:]|\s*\()/g)]
    .map(([, name]) => name as string)
    .filter((name) => !KEYWORDS.has(name.toLowerCase()));
}

describe('cluster/prometheus/rules.yml', () => {
  it('passes `promtool check rules`', () => {
    const { ok, output } = promtool('check', 'rules', 'cluster/prometheus/rules.yml');
    expect(ok, output).toBe(true);
  });

  it('passes its unit tests (`promtool test rules cluster/prometheus/rules.test.yml`)', () => {
    const { ok, output } = promtool('test', 'rules', 'cluster/prometheus/rules.test.yml');
    expect(ok, output).toBe(true);
  });

  it('has the alerts the operators asked for, each with a wait, a severity and its text', () => {
    const alerts = rules.filter((r) => r.alert);
    expect(alerts.map((r) => r.alert).sort()).toEqual([
      'ThresholdDeadLetters',
      'ThresholdFunnelLagGrowing',
      'ThresholdNodeDown',
      'ThresholdRedisUnreachable',
      'ThresholdSmsFailures',
    ]);
    for (const rule of alerts) {
      expect(rule.for, rule.alert).toMatch(/^\d+[smh]$/);
      expect(rule.labels?.severity, rule.alert).toMatch(/^(critical|warning)$/);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
      expect(rule.annotations?.description, rule.alert).toBeTruthy();
    }
    const tests = parse(read('cluster/prometheus/rules.test.yml')) as {
      tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    const cases = tests.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const rule of alerts) {
      const mine = cases.filter((c) => c.alertname === rule.alert);
      expect(
        mine.some((c) => c.exp_alerts.length > 0),
        `${rule.alert} fires in a test`,
      ).toBe(true);
      expect(
        mine.some((c) => c.exp_alerts.length === 0),
        `${rule.alert} stays quiet`,
      ).toBe(true);
    }
  });

  it('reads only series the nodes export', () => {
    for (const rule of rules) {
      const names = metricNames(rule.expr);
      expect(names.length, rule.expr).toBeGreaterThan(0);
      expect(
        names.filter((n) => !exported.has(n)),
        rule.expr,
      ).toEqual([]);
    }
  });
});

describe('cluster/grafana/threshold.json', () => {
  const compose = readCompose();
  const grafana = compose.services.grafana;
  const datasource = (
    parse(read('cluster/grafana/provisioning/datasources/prometheus.yml')) as {
      datasources: { uid: string; type: string; url: string }[];
    }
  ).datasources[0];

  it('is a dashboard of timeseries panels, each with at least one query', () => {
    expect(dashboard.uid).toBeTruthy();
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
    expect(dashboard.panels.length).toBeGreaterThan(0);
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
    for (const panel of dashboard.panels) {
      expect(panel.type, panel.title).toBe('timeseries');
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets ?? [])
        expect(target.expr?.trim(), panel.title).toBeTruthy();
    }
  });

  it('shows what the operators asked for', () => {
    const all = queries.map((q) => q.expr).join('\n');
    for (const series of [
      'threshold_ingress_total',
      'threshold_messages_relayed_total',
      'histogram_quantile(0.99, sum by (le) (rate(threshold_ingress_to_commit_seconds_bucket[1m])))',
      'threshold_ingress_to_delivery_seconds_bucket',
      'threshold_funnel_lag',
      'threshold_partitions_owned',
      'threshold_rebalances_total',
      'threshold_websocket_connections',
      'threshold_outbox_depth',
      'threshold_outbox_jobs_total{channel="sms"}',
      'threshold_dead_letters_total',
      'threshold_redis_connected',
    ])
      expect(all).toContain(series);
  });

  it('reads only series the nodes export', () => {
    for (const { panel, expr } of queries) {
      const names = metricNames(expr);
      expect(names.length, `${panel.title}: ${expr}`).toBeGreaterThan(0);
      expect(
        names.filter((n) => !exported.has(n)),
        `${panel.title}: ${expr}`,
      ).toEqual([]);
    }
  });

  it('queries only valid PromQL (checked by promtool as recording rules)', () => {
    const file = join(tmp, 'dashboard-queries.yml');
    const records = queries.map(({ panel, target, expr }) => ({
      record: `dashboard:panel_${panel.id}:${target.refId}`,
      expr,
    }));
    writeFileSync(file, stringify({ groups: [{ name: 'dashboard', rules: records }] }));
    const { ok, output } = promtool('check', 'rules', file);
    expect(ok, output).toBe(true);
    expect(output).toContain(`${records.length} rules found`);
  });

  it("uses the provisioned Prometheus datasource, which is the compose file's Prometheus", () => {
    expect(datasource?.type).toBe('prometheus');
    for (const { panel, target } of queries) {
      expect(panel.datasource?.uid, panel.title).toBe(datasource?.uid);
      expect(target.datasource?.uid ?? datasource?.uid, panel.title).toBe(datasource?.uid);
    }
    const url = new URL(datasource?.url ?? '');
    expect(compose.services[url.hostname], url.hostname).toBeDefined();
    const published = compose.services.prometheus?.ports?.map((p) => p.split(':').at(-1));
    expect(published).toContain(url.port);
  });

  it("is where the dashboard provider looks for it in Grafana's container", () => {
    const provider = (
      parse(read('cluster/grafana/provisioning/dashboards/threshold.yml')) as {
        providers: { type: string; options: { path: string } }[];
      }
    ).providers[0];
    expect(provider?.type).toBe('file');
    const mounted = containerPath(grafana, 'cluster/grafana/threshold.json');
    expect(mounted && posix.dirname(mounted)).toBe(provider?.options.path);
  });

  it('passes `promtool check config` with the compose mounts (rules included)', () => {
    const prometheus = compose.services.prometheus;
    const config = parse(read('cluster/prometheus.yml')) as { rule_files: string[] };
    // Each rule file the container loads, back to the repository file mounted there.
    const hostFor = (path: string) => {
      const local = ['cluster/prometheus/rules.yml'].find(
        (f) => containerPath(prometheus, f) === path,
      );
      expect(local, `no mount gives Prometheus ${path}`).toBeDefined();
      return join(ROOT, local as string);
    };
    const file = join(tmp, 'prometheus.yml');
    writeFileSync(file, stringify({ ...config, rule_files: config.rule_files.map(hostFor) }));
    const { ok, output } = promtool('check', 'config', file);
    expect(ok, output).toBe(true);
  });
});

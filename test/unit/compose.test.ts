/**
 * No Docker engine runs here, so docker-compose.cluster.yml, cluster/prometheus.yml and
 * cluster/Dockerfile are checked against the code instead: every variable is a setting the
 * node knows and accepts, ports line up, Prometheus scrapes every relay and loads the alerts,
 * every mounted file exists, and the image holds what the node needs at run time.
 * test/unit/monitoring.test.ts checks the rules and the Grafana dashboard themselves.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfig, settings } from '../../src/config.ts';
import { containerPath, mounts, readCompose, ROOT } from '../helpers/compose.ts';

const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

const compose = readCompose();
const relays = Object.entries(compose.services).filter(([name]) => name.startsWith('relay-'));
const envNames = new Set(settings().map((s) => s.env));

/**
 * The environment as compose fills it in for an operator who set only the required
 * variables: `${VAR:?message}` from the shell, `${VAR:-default}` its default.
 */
function substituted(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).map(([k, v]) => [
      k,
      String(v)
        .replace(/\$\{\w+:\?[^}]*\}/g, 'from-shell')
        .replace(/\$\{\w+:-([^}]*)\}/g, '$1'),
    ]),
  );
}

describe('docker-compose.cluster.yml', () => {
  it('runs Redis with the append-only file on, and three relay nodes built from cluster/Dockerfile', () => {
    const redis = compose.services.redis;
    expect(redis?.command?.join(' ')).toMatch(/--appendonly yes/);
    expect(relays.map(([name]) => name)).toEqual(['relay-1', 'relay-2', 'relay-3']);
    for (const [, relay] of relays) {
      expect(relay.build?.dockerfile).toBe('cluster/Dockerfile');
      expect(existsSync(join(ROOT, relay.build?.dockerfile ?? ''))).toBe(true);
    }
  });

  it('gives the relays only settings the node knows, with values it accepts', () => {
    for (const [name, relay] of relays) {
      const env = substituted(relay.environment ?? {});
      const unknown = Object.keys(env).filter((k) => !envNames.has(k));
      expect(unknown, `${name} sets variables no setting reads`).toEqual([]);
      const config = loadConfig({ env });
      expect(config.nodeId).toBe(name);
      expect(config.redisUrl).toBe('redis://redis:6379');
      // Every relay must agree on the partition count, or the later ones refuse to start.
      expect(config.partitions).toBe(64);
      expect(config.adminToken && config.jwtSecret, `${name} runs in open dev mode`).toBeTruthy();
    }
  });

  it('publishes each relay on its own host port, the one its advertised URL names', () => {
    const hostPorts = new Set<string>();
    for (const [name, relay] of relays) {
      const config = loadConfig({ env: substituted(relay.environment ?? {}) });
      const [host, container] = (relay.ports?.[0] ?? '').split(':');
      expect(Number(container), name).toBe(config.port);
      expect(new URL(config.advertiseUrl).port, name).toBe(host);
      hostPorts.add(host ?? '');
      expect(relay.healthcheck?.test.join(' ')).toContain(`:${config.port}/readyz`);
    }
    expect(hostPorts.size).toBe(relays.length);
  });
});

describe('cluster/prometheus.yml', () => {
  it('scrapes /metrics on every relay of the compose file, at its port', () => {
    const prometheus = parse(read('cluster/prometheus.yml')) as {
      scrape_configs: { metrics_path: string; static_configs: { targets: string[] }[] }[];
    };
    const job = prometheus.scrape_configs[0];
    expect(job?.metrics_path).toBe('/metrics');
    const expected = relays.map(
      ([name, relay]) =>
        `${name}:${loadConfig({ env: substituted(relay.environment ?? {}) }).port}`,
    );
    expect(job?.static_configs.flatMap((s) => s.targets).sort()).toEqual(expected.sort());
    expect(compose.services.prometheus?.depends_on).toEqual(relays.map(([name]) => name));
  });
});

describe('monitoring services', () => {
  it('mounts only files and folders that exist', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      for (const { host } of mounts(service)) {
        expect(existsSync(join(ROOT, host)), `${name} mounts ./${host}`).toBe(true);
      }
    }
  });

  it('gives Prometheus the alert rules at the path cluster/prometheus.yml loads them from', () => {
    const prometheus = compose.services.prometheus;
    expect(containerPath(prometheus, 'cluster/prometheus.yml')).toBe(
      '/etc/prometheus/prometheus.yml',
    );
    const config = parse(read('cluster/prometheus.yml')) as { rule_files?: string[] };
    expect(config.rule_files).toEqual([containerPath(prometheus, 'cluster/prometheus/rules.yml')]);
  });

  it('runs Grafana on port 3000 with the provisioning folders and the dashboard mounted', () => {
    const grafana = compose.services.grafana;
    expect(grafana?.image).toMatch(/^grafana\/grafana(:|$)/);
    expect(grafana?.ports?.[0]?.split(':').slice(-2)).toEqual(['3000', '3000']);
    expect(containerPath(grafana, 'cluster/grafana/provisioning/datasources/prometheus.yml')).toBe(
      '/etc/grafana/provisioning/datasources/prometheus.yml',
    );
    expect(containerPath(grafana, 'cluster/grafana/provisioning/dashboards/threshold.yml')).toBe(
      '/etc/grafana/provisioning/dashboards/threshold.yml',
    );
    expect(containerPath(grafana, 'cluster/grafana/threshold.json')).toBeDefined();
    expect(grafana?.depends_on).toEqual(['prometheus']);
  });
});

describe('cluster/Dockerfile', () => {
  const dockerfile = read('cluster/Dockerfile');

  it('exposes the port the relays listen on and runs `threshold node`', () => {
    const port = String(loadConfig({ env: {} }).port);
    expect(dockerfile).toMatch(new RegExp(`^EXPOSE ${port}$`, 'm'));
    expect(dockerfile).toMatch(/^CMD \["node", "bin\/threshold.js", "node"\]$/m);
    for (const [, from] of dockerfile.matchAll(/^COPY (\S+) /gm)) {
      expect(existsSync(join(ROOT, from as string)), `COPY ${from}`).toBe(true);
    }
  });

  it('installs without dev dependencies, so everything src/ imports is a dependency', () => {
    expect(dockerfile).toContain('npm ci --omit=dev');
    const { dependencies } = JSON.parse(read('package.json')) as {
      dependencies: Record<string, string>;
    };
    const imported = new Set<string>();
    const walk = (dir: string) => {
      for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (/\.(ts|js)$/.test(entry.name)) {
          for (const [, spec] of read(path).matchAll(/^import (?!type )[^'"]*['"]([^'"]+)['"]/gm)) {
            if (spec && !spec.startsWith('.') && !spec.startsWith('node:'))
              imported.add(
                spec.startsWith('@')
                  ? spec.split('/').slice(0, 2).join('/')
                  : (spec.split('/')[0] as string),
              );
          }
        }
      }
    };
    walk('src');
    walk('bin');
    const missing = [...imported].filter((name) => !(name in dependencies));
    expect(missing, 'imported at run time but only a dev dependency (or not listed)').toEqual([]);
  });
});

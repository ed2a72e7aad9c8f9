import { readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { parse } from 'yaml';

export const ROOT = join(import.meta.dirname, '../..');

export interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  depends_on?: unknown;
  healthcheck?: { test: string[] };
}

/** docker-compose.cluster.yml with its anchors merged. */
export function readCompose(): { services: Record<string, Service> } {
  const text = readFileSync(join(ROOT, 'docker-compose.cluster.yml'), 'utf8');
  return parse(text, { merge: true }) as { services: Record<string, Service> };
}

/** A service's bind mounts (`./host:/container[:ro]`), host paths relative to the repository. */
export function mounts(service: Service | undefined): { host: string; container: string }[] {
  return (service?.volumes ?? [])
    .filter((v) => v.startsWith('./'))
    .map((v) => {
      const [host = '', container = ''] = v.split(':');
      return { host: posix.normalize(host), container };
    });
}

/** Where a service sees a repository path (a file mounted itself, or inside a mounted folder). */
export function containerPath(service: Service | undefined, path: string): string | undefined {
  for (const { host, container } of mounts(service)) {
    if (path === host) return container;
    if (path.startsWith(`${host}/`)) return posix.join(container, path.slice(host.length + 1));
  }
  return undefined;
}

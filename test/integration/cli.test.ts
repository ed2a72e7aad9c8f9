import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { settings } from '../../src/config.ts';
import { runThreshold } from '../helpers/process.ts';

const PACKAGE = JSON.parse(
  readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
) as { version: string };

/** `npx threshold <args>` to its end: exit code and what it printed. */
async function threshold(...args: string[]) {
  const proc = runThreshold(args);
  const { code } = await proc.exited;
  return { code, output: proc.output() };
}

describe('threshold (the command line)', () => {
  it('--help, help, -h and nothing at all list every command and exit 0', async () => {
    const runs = await Promise.all([['--help'], ['help'], ['-h'], []].map((a) => threshold(...a)));
    for (const { code, output } of runs) {
      expect(code).toBe(0);
      for (const command of ['node', 'cluster', 'keys', 'settings', 'doctor', 'help'])
        expect(output).toMatch(new RegExp(`^  ${command} +\\S`, 'm'));
      expect(output).toContain('--version');
    }
  });

  it('prints the version of package.json with --version', async () => {
    const { code, output } = await threshold('--version');
    expect(code).toBe(0);
    expect(output).toBe(`${PACKAGE.version}\n`);
  });

  it('node --help prints every setting flag and exits 0 (it is no unknown option)', async () => {
    const { code, output } = await threshold('node', '--help');
    expect(code).toBe(0);
    expect(output).toMatch(/^Usage: threshold node/);
    expect(output).toContain('--config FILE');
    for (const leaf of settings()) expect(output).toContain(`--${leaf.flag} VALUE`);
  });

  it('cluster, keys, settings and doctor --help print their flags and exit 0', async () => {
    const expected: Record<string, string[]> = {
      cluster: ['--nodes N', '--redis-cluster M', '--port VALUE'],
      keys: ['--scope SCOPE', '--name NAME', 'create', 'list'],
      settings: ['Usage: threshold settings'],
      doctor: ['--timeout-ms MS', '--config FILE', '--redis-url VALUE', 'redis persistence'],
    };
    const runs = await Promise.all(
      Object.keys(expected).map(async (command) => ({
        command,
        ...(await threshold(command, '--help')),
      })),
    );
    for (const { command, code, output } of runs) {
      expect(code, command).toBe(0);
      expect(output).toMatch(new RegExp(`^Usage: threshold ${command}`));
      for (const flag of expected[command] ?? []) expect(output, command).toContain(flag);
    }
  });

  it('help <command> is <command> --help', async () => {
    const [help, flag] = await Promise.all([
      threshold('help', 'keys'),
      threshold('keys', '--help'),
    ]);
    expect(help).toEqual(flag);
  });

  it('settings prints the configuration table with its meaning column', async () => {
    const { code, output } = await threshold('settings');
    expect(code).toBe(0);
    expect(output).toMatch(/^setting +default +environment +flag +meaning$/m);
    expect(output).toMatch(
      /^http\.allowedOrigins +\(empty\) +THRESHOLD_HTTP_ALLOWED_ORIGINS +--http-allowed-origins +comma-separated origins/m,
    );
  });

  it('refuses an unknown command with 2 and the usage', async () => {
    const { code, output } = await threshold('nod');
    expect(code).toBe(2);
    expect(output).toContain('unknown command "nod"');
    expect(output).toContain('Commands:');
  });

  it('help <unknown> refuses it like an unknown command: 2 and the usage', async () => {
    const { code, output } = await threshold('help', 'nod');
    expect(code).toBe(2);
    expect(output).toContain('unknown command "nod"');
    expect(output).toContain('Commands:');
  });
});

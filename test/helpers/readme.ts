import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { onTestFinished } from 'vitest';

export const README = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
/** The repository's root: where README commands run. */
export const ROOT = new URL('../../', import.meta.url).pathname;

const run = promisify(execFile);

/** The fenced code blocks of the README section that starts with `heading`. */
export function readmeBlocks(heading: string): string[] {
  const start = README.indexOf(heading);
  const end = README.indexOf('\n## ', start + heading.length);
  const section = README.slice(start, end === -1 ? undefined : end);
  return [...section.matchAll(/```[a-z]*\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
}

/** Every line of those blocks. */
export function readmeLines(heading: string): string[] {
  return readmeBlocks(heading).join('\n').split('\n');
}

/** Runs a README command with bash, from the repository's root; resolves with its stdout. */
export async function shell(command: string, timeoutMs = 15_000): Promise<string> {
  const { stdout } = await run('bash', ['-c', command], { cwd: ROOT, timeout: timeoutMs });
  return stdout;
}

/** A fresh temporary directory, deleted when the test finishes (call inside a test). */
export async function tempDir(name: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `threshold-${name}-`));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';

/** The README's code block that starts with `// <file>` (a plug-in example), as a user copies it. */
export async function readmeExample(file: string): Promise<string> {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  const escaped = file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const block = new RegExp('```js\\n(// ' + escaped + '[\\s\\S]*?)```').exec(readme)?.[1];
  if (!block) throw new Error(`README: no example starting with // ${file}`);
  return block;
}

/**
 * A config file in a directory of its own (outside the repository), beside the plug-in
 * files it names by relative paths; removed when the test finishes.
 */
export async function configFile(
  settings: Record<string, unknown>,
  files: Record<string, string>,
): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'threshold-plugins-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
  const path = join(dir, 'threshold.json');
  await writeFile(path, JSON.stringify(settings));
  return path;
}

import { fileDefaults, settings } from './config.ts';
import { MEANINGS } from './config-meanings.ts';

export const SETTINGS_HELP = `Usage: threshold settings

Prints every setting with its default, environment variable, flag and meaning (the README's
configuration table), one line each: \`threshold settings | grep ws.\` finds a family.
Lists (channels, sources, validators, handlers) are set in a --config file only.
`;

/** `threshold settings`: the README's configuration table, as aligned columns. */
export function settingsTable(defaults = fileDefaults()): string {
  const rows = [['setting', 'default', 'environment', 'flag', 'meaning']];
  for (const leaf of settings(defaults)) {
    const name = leaf.path.join('.');
    rows.push([
      name,
      shown(valueAt(defaults, leaf.path)),
      leaf.env,
      `--${leaf.flag}`,
      meaning(name),
    ]);
  }
  // Lists have no variable or flag.
  for (const [key, value] of Object.entries(defaults)) {
    if (Array.isArray(value)) rows.push([key, JSON.stringify(value), '', '', LIST]);
  }
  const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
    .concat('\n');
}

/** The setting flags `node` and `cluster` take, with their defaults (meanings: settingsTable). */
export function settingFlags(defaults = fileDefaults()): string {
  const rows = settings(defaults).map((leaf) => [
    `--${leaf.flag} VALUE`,
    shown(valueAt(defaults, leaf.path)),
  ]);
  const width = Math.max(...rows.map(([flag]) => (flag ?? '').length));
  return rows.map(([flag, value]) => `  ${(flag ?? '').padEnd(width)}  ${value}\n`).join('');
}

const LIST = '(a list: set it in a --config file)';

function meaning(name: string): string {
  return (MEANINGS as Record<string, string | undefined>)[name] ?? '';
}

function valueAt(defaults: Record<string, unknown>, path: string[]): unknown {
  let value: unknown = defaults;
  for (const key of path) value = (value as Record<string, unknown>)[key];
  return value;
}

function shown(value: unknown): string {
  return value === '' ? '(empty)' : String(value);
}

import { describe, expect, it } from 'vitest';
import { settings } from '../../src/config.ts';
import { MEANINGS } from '../../src/config-meanings.ts';
import { settingFlags, settingsTable } from '../../src/settings-command.ts';

describe('settingsTable', () => {
  const lines = settingsTable().trimEnd().split('\n');
  const header = lines[0] ?? '';
  const column = (name: string) => header.indexOf(name);

  it('prints every setting on one line with its default, variable, flag and meaning, aligned', () => {
    expect(header).toMatch(/^setting +default +environment +flag +meaning$/);
    for (const leaf of settings()) {
      const name = leaf.path.join('.');
      const line = lines.find((l) => l.startsWith(`${name} `));
      expect(line, name).toBeDefined();
      expect(line?.indexOf(leaf.env), name).toBe(column('environment'));
      expect(line?.indexOf(`--${leaf.flag}`), name).toBe(column('flag'));
      const meaning = MEANINGS[name as keyof typeof MEANINGS];
      expect(meaning.length, name).toBeGreaterThan(0);
      expect(line?.slice(column('meaning')), name).toBe(meaning);
    }
  });

  it('shows an empty default as (empty) and says lists are set in a config file', () => {
    expect(lines.find((l) => l.startsWith('redisUrl '))?.slice(column('default'))).toMatch(
      /^\(empty\) /,
    );
    expect(lines.find((l) => l.startsWith('channels '))).toMatch(
      /^channels +\[\] +\(a list: set it in a --config file\)$/,
    );
  });
});

describe('settingFlags', () => {
  it('lists every setting flag with its default', () => {
    const text = settingFlags();
    expect(text).toMatch(/^ {2}--port VALUE +8080$/m);
    expect(text.trimEnd().split('\n')).toHaveLength(settings().length);
  });
});

import pino from 'pino';
import { describe, expect, it, onTestFinished } from 'vitest';
import { openAuthDatabase } from '../../src/auth/database.ts';
import { MIGRATIONS, migrate } from '../../src/auth/migrations.ts';
import { createTestDatabase } from '../helpers/postgres.ts';
import { tempDir } from '../helpers/readme.ts';

const log = pino({ level: 'silent' });

describe('auth database migrations', () => {
  it('six nodes starting at once against one Postgres migrate it once', async () => {
    const db = await createTestDatabase();
    onTestFinished(() => db.drop());
    const nodes = await Promise.all(
      Array.from({ length: 6 }, () => openAuthDatabase({ url: db.url, dataDir: '' }, log)),
    );
    onTestFinished(async () => {
      await Promise.all(nodes.map((n) => n.close()));
    });
    const applied = await Promise.all(nodes.map((n) => migrate(n, log)));
    const latest = MIGRATIONS.map((m) => m.version);
    expect(applied.filter((a) => a.length > 0)).toEqual([latest]);
    const rows = await (nodes[0] as (typeof nodes)[0]).query<{ version: number }>(
      'SELECT version FROM schema_migrations ORDER BY version',
    );
    expect(rows.map((r) => r.version)).toEqual(latest);
  });

  it('embedded PGlite keeps its schema and data across a reopen, and migrates only once', async () => {
    const dataDir = await tempDir('pglite');
    const first = await openAuthDatabase({ url: '', dataDir }, log);
    expect(first.kind).toBe('pglite');
    expect(await migrate(first, log)).toEqual(MIGRATIONS.map((m) => m.version));
    await first.query(`INSERT INTO users (id, phone) VALUES ('u1', '+12015550123')`);
    await expect(
      first.transaction(async (tx) => {
        await tx.query(`INSERT INTO users (id, phone) VALUES ('u2', '+12015550124')`);
        throw new Error('rolled back');
      }),
    ).rejects.toThrow('rolled back');
    await first.close();

    const again = await openAuthDatabase({ url: '', dataDir }, log);
    onTestFinished(() => again.close());
    expect(await migrate(again, log)).toEqual([]);
    const users = await again.query<{ id: string; state: string }>('SELECT id, state FROM users');
    expect(users).toEqual([{ id: 'u1', state: 'pending' }]);
  });
});

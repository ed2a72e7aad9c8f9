import { describe, expect, it, onTestFinished } from 'vitest';
import { codeFor, post, signUp, testPhone } from '../helpers/accounts.ts';
import { startTestNode, type TestNode } from '../helpers/node.ts';
import { createTestDatabase } from '../helpers/postgres.ts';
import { tempDir } from '../helpers/readme.ts';
import { connect } from '../helpers/ws-client.ts';

/** The must-show path: sign up by SMS code, then use the token on the WebSocket. */
async function signUpAndPublish(node: TestNode, phone: string, room: string) {
  const { token, member } = await signUp(node, phone, { first: 'Ada', last: 'Lovelace' });
  expect(member).toMatch(/^user:[0-9a-z]{26}$/);
  await node.createRoom(room, [member]);
  const client = await connect(node.wsUrl, token);
  expect((await client.welcome).member).toBe(member);
  client.send({ type: 'publish', room, body: 'signed up by phone', id: 'c1' });
  const ack = await client.next((f) => f.type === 'ack' || f.type === 'error');
  expect(ack).toMatchObject({ type: 'ack', id: 'c1', seq: 1 });
  await client.close();
  return member;
}

describe.each([
  { db: 'embedded PGlite (no THRESHOLD_DATABASE_URL)', postgres: false },
  { db: 'the machine’s Postgres (THRESHOLD_DATABASE_URL)', postgres: true },
])('accounts on $db', ({ postgres }) => {
  async function database() {
    const dataDir = await tempDir('accounts');
    if (!postgres) return { dataDir };
    const db = await createTestDatabase();
    onTestFinished(() => db.drop());
    return { dataDir, databaseUrl: db.url };
  }

  it('a fresh node signs up a phone end to end, and a restart keeps the user', async () => {
    const overrides = await database();
    const phone = testPhone();
    const first = await startTestNode({ name: 'accounts', overrides });
    const member = await signUpAndPublish(first, phone, 'signup-room');
    await first.stop();

    const again = await startTestNode({ name: 'accounts', overrides });
    const signedIn = await signUp(again, phone);
    expect(signedIn.member).toBe(member);
  });

  it('five wrong codes end the code (429, the right one no longer works); a sixth send within 10 minutes is 429', async () => {
    const overrides = await database();
    const node = await startTestNode({ name: 'accounts', overrides });
    const phone = testPhone();
    expect((await post(node, '/v1/auth/phone/start', { phone })).status).toBe(202);
    const code = await codeFor(node, phone);
    const wrong = code === '000000' ? '000001' : '000000';
    const answers = [];
    for (let i = 0; i < 5; i++)
      answers.push((await post(node, '/v1/auth/phone/verify', { phone, code: wrong })).status);
    expect(answers).toEqual([401, 401, 401, 401, 429]);
    const right = await post(node, '/v1/auth/phone/verify', { phone, code });
    expect(right.status).toBe(429);
    expect((await right.json()) as unknown).toMatchObject({ code: 'too_many_attempts' });

    for (let i = 2; i <= 5; i++)
      expect((await post(node, '/v1/auth/phone/start', { phone })).status).toBe(202);
    const sixth = await post(node, '/v1/auth/phone/start', { phone });
    expect(sixth.status).toBe(429);
    expect(Number(sixth.headers.get('retry-after'))).toBeGreaterThan(500);
    // A new code (after the exhausted one) works again.
    const fresh = await codeFor(node, phone, 5);
    const ok = await post(node, '/v1/auth/phone/verify', { phone, code: fresh });
    expect(ok.status).toBe(200);
  });
});

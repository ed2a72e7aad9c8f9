import { describe, expect, it } from 'vitest';
import { fileDefaults, settings } from '../../src/config.ts';
import { MEANINGS } from '../../src/config-meanings.ts';
import { freePort } from '../helpers/ports.ts';
import { runThreshold } from '../helpers/process.ts';
import { README, readmeBlocks, readmeLines, shell, tempDir } from '../helpers/readme.ts';
import { connect } from '../helpers/ws-client.ts';

/** `npx threshold node` as the README starts it, on `port`, with a data directory of its own. */
async function startNode(name: string, port: number, env: NodeJS.ProcessEnv = {}) {
  const node = runThreshold(['node'], {
    ...env,
    THRESHOLD_PORT: String(port),
    THRESHOLD_DATA_DIR: await tempDir(name),
  });
  await node.waitFor(/relay node started/);
  return node;
}

/**
 * The README's `npx threshold keys create …` line run in a fresh data directory, then
 * `npx threshold node` on that directory: the key it printed, and the node.
 */
async function keyThenNode(name: string, create: string, port: number) {
  const dataDir = await tempDir(name);
  // The first open of the embedded database creates its files: seconds on a busy machine.
  const key = (await shell(`THRESHOLD_DATA_DIR=${dataDir} ${create}`, 60_000)).trim();
  expect(key).toMatch(/^thr_[0-9a-z]{26}_\S{43}$/);
  const node = runThreshold(['node'], {
    THRESHOLD_PORT: String(port),
    THRESHOLD_DATA_DIR: dataDir,
  });
  await node.waitFor(/relay node started/);
  return { key, node };
}

describe('README', () => {
  it('the configuration table lists every setting, with its default, environment variable, flag and meaning', () => {
    const rows = new Map(
      [
        ...README.matchAll(
          /^\| ([a-zA-Z.]+) +\| ([^|]+)\| `([A-Z_]+)` +\| `--([a-z-]+)` +\| (.*?) *\|$/gm,
        ),
      ].map((m) => [
        m[1],
        {
          value: (m[2] ?? '').trim(),
          env: m[3],
          flag: m[4],
          meaning: m[5]?.replaceAll('\\|', '|'),
        },
      ]),
    );
    const defaults = fileDefaults();
    for (const leaf of settings(defaults)) {
      const name = leaf.path.join('.');
      const row = rows.get(name);
      expect(row, `README lacks a row for ${name}`).toBeDefined();
      expect(row?.env, name).toBe(leaf.env);
      expect(row?.flag, name).toBe(leaf.flag);
      // `threshold settings` prints src/config-meanings.ts: the README must say the same.
      expect(row?.meaning, `meaning of ${name}`).toBe(MEANINGS[name as keyof typeof MEANINGS]);
      let value: unknown = defaults;
      for (const key of leaf.path) value = (value as Record<string, unknown>)[key];
      // An empty default may be shown as what it means (`<hostname>-<port>` for nodeId).
      if (value !== '') expect(row?.value, `default of ${name}`).toBe(`\`${String(value)}\``);
    }
    expect(rows.size).toBe(settings(defaults).length);
  });

  it('the two-minute tour works as written, against a node started as the README says', async () => {
    const tour = readmeLines('## A two-minute tour');
    const port = await freePort();
    const local = (s: string) => s.replaceAll('localhost:8080', `127.0.0.1:${port}`);
    const curls = tour.filter((l) => l.startsWith('curl ')).map(local);
    const wscat = tour.find((l) => l.startsWith('npx wscat -c '));
    const sent = tour.filter((l) => l.startsWith('> ')).map((l) => JSON.parse(l.slice(2)));
    expect(tour).toContain('npx threshold node');
    expect(curls).toHaveLength(5);
    expect(wscat).toBeDefined();
    expect(sent).toHaveLength(2);

    const node = await startNode('readme', port);

    const [createRoom, addMember, publish, history, metrics] = curls as [
      string,
      string,
      string,
      string,
      string,
    ];
    expect(JSON.parse(await shell(createRoom))).toMatchObject({
      id: 'garden',
      name: 'Garden club',
    });
    expect(JSON.parse(await shell(addMember))).toEqual({ room: 'garden', member: 'user:alice' });

    const url = local(/'([^']+)'/.exec(wscat ?? '')?.[1] ?? '');
    const alice = await connect(url);
    alice.send(sent[0]);
    expect(await alice.next()).toEqual({ type: 'subscribed', room: 'garden', seq: 0 });

    expect(JSON.parse(await shell(publish))).toMatchObject({ seq: 1, status: 'committed' });
    expect(await alice.next()).toMatchObject({
      type: 'message',
      room: 'garden',
      seq: 1,
      sender: { kind: 'service', id: 'admin' },
      body: 'Seedlings are in!',
    });

    alice.send(sent[1]);
    const [ack, own] = (await alice.take(2)).sort((a) => (a.type === 'ack' ? -1 : 1));
    expect(ack).toEqual({ type: 'ack', id: 'c1', seq: 2 });
    expect(own).toMatchObject({
      type: 'message',
      seq: 2,
      id: 'ws:garden:user:alice:c1',
      body: 'Tomatoes next',
    });

    const page = JSON.parse(await shell(history));
    expect(page.messages.map((m: { seq: number }) => m.seq)).toEqual([1, 2]);
    expect(await shell(metrics)).toMatch(/^threshold_messages_relayed_total\{source="http"\} 1$/m);
    await alice.close();
    node.child.kill('SIGTERM');
    expect((await node.exited).code).toBe(0);
  });

  it('the secrets example: a node started that way accepts the admin token and the example JWT', async () => {
    const [start, sign] = readmeBlocks('### With secrets');
    const command = start?.trim() ?? '';
    expect(command).toMatch(/ npx threshold node$/);
    const env = Object.fromEntries(
      [...command.matchAll(/(THRESHOLD_[A-Z_]+)=(\S+)/g)].map((m) => [m[1], m[2]]),
    );
    expect(Object.keys(env)).toEqual(['THRESHOLD_ADMIN_TOKEN', 'THRESHOLD_JWT_SECRET']);

    const port = await freePort();
    const node = await startNode('readme-secrets', port, env);
    const base = `http://127.0.0.1:${port}`;
    const admin = {
      authorization: `Bearer ${env.THRESHOLD_ADMIN_TOKEN}`,
      'content-type': 'application/json',
    };
    expect(
      (await fetch(`${base}/v1/rooms`, { method: 'POST', headers: admin, body: '{"id":"garden"}' }))
        .status,
    ).toBe(201);
    expect((await fetch(`${base}/v1/rooms`, { method: 'GET' })).status).toBe(401);
    await fetch(`${base}/v1/rooms/garden/members/user:alice`, { method: 'PUT', headers: admin });

    const token = (await shell(sign?.trim() ?? '')).trim();
    const alice = await connect(`ws://127.0.0.1:${port}/v1/ws?token=${token}`);
    alice.send({ type: 'subscribe', room: 'garden' });
    expect(await alice.next()).toEqual({ type: 'subscribed', room: 'garden', seq: 0 });
    await alice.close();
    node.child.kill('SIGTERM');
    expect((await node.exited).code).toBe(0);
  });

  it('Accounts: sign-up by phone works as written, in open development mode with no Twilio account', async () => {
    const lines = readmeLines('## Accounts: sign-up by phone');
    const port = await freePort();
    const local = (s: string) => s.replaceAll('localhost:8080', `127.0.0.1:${port}`);
    const [start, outbox, verify] = lines.filter((l) => l.startsWith('curl ')).map(local) as [
      string,
      string,
      string,
    ];
    const shown = lines.find((l) => l.startsWith('# {"texts"')) ?? '';
    const code = /is (\d{6})\./.exec(shown)?.[1] ?? '';
    expect(verify).toContain(`"code":"${code}"`);

    const node = await startNode('readme-accounts', port);
    expect(JSON.parse(await shell(start))).toEqual({ phone: '+12015550123', expiresIn: 600 });
    const { texts } = JSON.parse(await shell(outbox)) as {
      texts: { to: string; from: string; body: string }[];
    };
    const text = texts.find((t) => t.to === '+12015550123');
    expect(text?.from).toBe('+15005550006');
    expect(text?.body.replace(/\d{6}/, code)).toBe(/"body":"([^"]+)"/.exec(shown)?.[1]);
    const sent = /\d{6}/.exec(text?.body ?? '')?.[0] ?? '';
    const answer = JSON.parse(await shell(verify.replace(code, sent))) as {
      token: string;
      member: string;
    };
    expect(answer.member).toMatch(/^user:[0-9a-z]{26}$/);
    // Open development mode signs with a secret it generated and keeps in the auth database.
    const me = await fetch(`http://127.0.0.1:${port}/v1/me/rooms`, {
      headers: { authorization: `Bearer ${answer.token}` },
    });
    expect(me.status).toBe(200);
    node.child.kill('SIGTERM');
    expect((await node.exited).code).toBe(0);
  });

  it(
    'API keys work as written: the first from the command line, the rest over HTTP',
    { timeout: 120_000 },
    async () => {
      const lines = readmeLines('## API keys');
      const port = await freePort();
      const local = (s: string) => s.replaceAll('localhost:8080', `127.0.0.1:${port}`);
      const [create] = lines.filter((l) => l.startsWith('npx threshold keys'));
      const [room, newKey, publish, list, revoke] = lines
        .filter((l) => l.startsWith('curl '))
        .map(local) as [string, string, string, string, string];
      const { key, node } = await keyThenNode('readme-keys', create ?? '', port);
      const withKeys = (s: string, billing = '', id = '') =>
        s.replaceAll('$KEY', key).replaceAll('$BILLING', billing).replaceAll('01kby…', id);
      expect(JSON.parse(await shell(withKeys(room)))).toMatchObject({ id: 'alerts' });
      const made = JSON.parse(await shell(withKeys(newKey))) as { id: string; key: string };
      const shown = lines.find((l) => l.startsWith('# {"id"')) ?? '';
      expect(Object.keys(made)).toEqual(
        Object.keys(JSON.parse(shown.slice(2).replaceAll('…', ''))),
      );
      expect(made).toMatchObject({ name: 'billing', scopes: ['publish:alerts'] });
      expect(JSON.parse(await shell(withKeys(publish, made.key)))).toMatchObject({
        status: 'accepted',
      });
      const listed = await shell(withKeys(list));
      expect(listed).toContain(made.id);
      expect(listed).not.toContain(made.key);
      expect(await shell(withKeys(revoke, '', made.id))).toBe('');
      const after = await shell(`${withKeys(publish, made.key)} -o /dev/null -w '%{http_code}'`);
      expect(after).toBe('401');
      node.child.kill('SIGTERM');
      expect((await node.exited).code).toBe(0);
    },
  );

  it('Invites and connections work as written, in open development mode', async () => {
    const lines = readmeLines('## Invites and connections');
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const curls = lines
      .filter((l) => l.startsWith('curl '))
      .map((l) => l.replaceAll('localhost:8080', `127.0.0.1:${port}`));
    expect(curls).toHaveLength(4);
    const node = await startNode('readme-invites', port);
    /** Sign-up as the Accounts section shows it, the code read from the dev outbox. */
    const signUp = async (phone: string, first: string, last: string) => {
      const json = { 'content-type': 'application/json' };
      const start = { phone, first, last };
      const started = await fetch(`${base}/v1/auth/phone/start`, {
        method: 'POST',
        headers: json,
        body: JSON.stringify(start),
      });
      // Each answer checked as it comes: a failure says which step, with its body.
      expect(`${started.status} ${await started.text()}`).toMatch(/^202 /);
      const outbox = await fetch(`${base}/v1/dev/outbox`);
      const listed = await outbox.text();
      expect(`${outbox.status} ${listed}`).toMatch(/^200 /);
      const { texts } = JSON.parse(listed) as { texts: { to: string; body: string }[] };
      const code = /\d{6}/.exec(texts.filter((t) => t.to === phone).at(-1)?.body ?? '')?.[0];
      const verified = await fetch(`${base}/v1/auth/phone/verify`, {
        method: 'POST',
        headers: json,
        body: JSON.stringify({ phone, code }),
      });
      return (await verified.json()) as { token: string; member: string };
    };
    const ada = await signUp('+12015550123', 'Ada', 'Lovelace');
    const bob = await signUp('+12015550188', 'Bob', 'Babbage');
    const env = `ADA='${ada.token}' BOB='${bob.token}'; `;
    const [invite, received, accept, connections] = curls as [string, string, string, string];

    const sent = JSON.parse(await shell(env + invite)) as Record<string, unknown>;
    expect(sent).toMatchObject({
      state: 'pending',
      inviter: ada.member,
      inviterName: 'Ada Lovelace',
      invitee: bob.member,
      first: 'Bob',
      phone: '+12015550188',
    });
    const id = sent.id as string;
    expect(JSON.parse(await shell(env + received))).toMatchObject({
      role: 'received',
      invites: [{ id, state: 'pending', inviter: ada.member }],
    });
    expect(JSON.parse(await shell(env + accept.replace('01kby…', id)))).toMatchObject({
      id,
      state: 'accepted',
      room: `c-${id}`,
    });
    expect(JSON.parse(await shell(env + connections))).toEqual({
      connections: [{ member: bob.member, room: `c-${id}`, since: expect.any(Number) }],
    });
    node.child.kill('SIGTERM');
    expect((await node.exited).code).toBe(0);
  });

  it(
    'tags work as written: the answers are the # lines under each command',
    { timeout: 120_000 },
    async () => {
      const lines = readmeLines('## Tags');
      const port = await freePort();
      const [create] = lines.filter((l) => l.startsWith('npx threshold keys'));
      const { key, node } = await keyThenNode('readme-tags', create ?? '', port);
      const curls = lines.flatMap((line, i) =>
        line.startsWith('curl ')
          ? [{ command: line, answer: lines[i + 1]?.startsWith('# {') ? lines[i + 1] : undefined }]
          : [],
      );
      expect(curls).toHaveLength(9);
      for (const { command, answer } of curls) {
        const local = command
          .replaceAll('localhost:8080', `127.0.0.1:${port}`)
          .replaceAll('$TAGS', key);
        const out = await shell(local);
        if (answer === undefined) continue;
        // `# {…}   (a note)`: the JSON is up to the note.
        const json = answer.slice(2).replace(/\s+\(.*\)$/, '');
        expect(JSON.parse(out), command).toEqual(JSON.parse(json));
      }
      node.child.kill('SIGTERM');
      expect((await node.exited).code).toBe(0);
    },
  );

  it('SMS development mode: texting a room and reading the outbox work as written, with no Twilio account', async () => {
    const lines = readmeLines('### Try it without a Twilio account');
    const port = await freePort();
    const local = (s: string) => s.replaceAll('localhost:8080', `127.0.0.1:${port}`);
    const curls = lines.filter((l) => l.startsWith('curl ')).map(local);
    expect(lines).toContain('npx threshold node');
    expect(curls).toHaveLength(6);
    // The bodies the README shows in the outbox, in its order.
    const outboxComment = lines.filter((l) => l.startsWith('# {"texts"') || l.startsWith('#     '));
    const promised = outboxComment.flatMap((l) =>
      [...l.matchAll(/"body":"([^"]+)"/g)].map((m) => m[1]),
    );
    expect(promised).toEqual(['+15550001111: Water the beans?', 'Sent to Allotment (1)']);

    const node = await startNode('readme-sms', port);
    expect(node.output()).toMatch(/SMS development mode/);

    const [createRoom, addAnn, addBob, text, outbox, help] = curls as [
      string,
      string,
      string,
      string,
      string,
      string,
    ];
    expect(JSON.parse(await shell(createRoom))).toMatchObject({
      id: 'allotment',
      numbers: ['+15550001000'],
    });
    expect(JSON.parse(await shell(addAnn))).toEqual({
      room: 'allotment',
      member: 'phone:+15550001111',
    });
    expect(JSON.parse(await shell(addBob))).toEqual({
      room: 'allotment',
      member: 'phone:+15550002222',
    });
    expect(JSON.parse(await shell(text))).toMatchObject({ outcome: 'relayed' });

    type Texts = { texts: { to: string; from: string; body: string }[] };
    const readOutbox = async (until: (t: Texts['texts']) => boolean) => {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const { texts } = JSON.parse(await shell(outbox)) as Texts;
        if (until(texts)) return texts;
        if (Date.now() > deadline) throw new Error(`outbox: ${JSON.stringify(texts)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const texts = await readOutbox((t) => t.length >= 2);
    expect(texts).toEqual([
      expect.objectContaining({ to: '+15550002222', from: '+15550001000', body: promised[0] }),
      expect.objectContaining({ to: '+15550001111', from: '+15550001000', body: promised[1] }),
    ]);

    expect(JSON.parse(await shell(help))).toMatchObject({ outcome: 'keyword' });
    const after = await readOutbox((t) => t.length >= 3);
    expect(after[2]).toMatchObject({ to: '+15550002222', from: '+15550001000' });
    expect(after[2]?.body).toMatch(/JOIN, LEAVE, ROOMS/);
    node.child.kill('SIGTERM');
    expect((await node.exited).code).toBe(0);
  });
});

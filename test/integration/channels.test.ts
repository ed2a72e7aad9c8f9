import { Webhook } from 'standardwebhooks';
import { describe, expect, it } from 'vitest';
import { eventually } from '../helpers/eventually.ts';
import { receiver } from '../helpers/http-receiver.ts';
import { startTestNode, type TestNode } from '../helpers/node.ts';
import { configFile, readmeExample } from '../helpers/readme-example.ts';

/** `GET /v1/messages/:id`'s answer, as far as these tests read it. */
interface Status {
  recipients: number;
  channels?: Record<string, Record<string, number>>;
}

async function messageStatus(node: TestNode, id: string, room: string): Promise<Status> {
  return (await (await node.admin('GET', `/v1/messages/${id}?room=${room}`)).json()) as Status;
}

interface Received {
  to: string;
  seq: number;
  body: string;
  attempt: number;
  id: string;
}

describe('delivery channel plug-ins', () => {
  it("the README's channel module, named in a config file, gets every message of its members in seq order, retried when it answers retry", async () => {
    let refused = false;
    const pager = await receiver((_, body) => {
      const { to, seq } = JSON.parse(body) as Received;
      // The first attempt of message 5 to pager:ops: "busy, try later".
      if (to === 'pager:ops' && seq === 5 && !refused) {
        refused = true;
        return 503;
      }
      return 200;
    });
    const config = await configFile(
      {
        channels: [{ name: 'pager', module: './pager.mjs', options: { url: pager.url } }],
        outbox: { backoffBaseMs: 50, backoffMaxMs: 100 },
      },
      { 'pager.mjs': await readmeExample('pager.mjs') },
    );
    const node = await startTestNode({ name: 'channel plug-in', config });
    await node.createRoom('ops', ['pager:ops', 'pager:oncall', 'user:alice']);
    // A prefix no channel delivers to is refused, not silently unreachable.
    const unknown = await node.admin('PUT', '/v1/rooms/ops/members/telex:ops');
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toMatchObject({ detail: expect.stringMatching(/telex:/) });

    const ids: string[] = [];
    for (let i = 1; i <= 20; i++) {
      const res = await node.admin('POST', '/v1/rooms/ops/messages', { body: `page ${i}` });
      expect(res.status).toBe(202);
      ids.push(((await res.json()) as { id: string }).id);
    }
    const accepted = (to: string) =>
      pager.requests
        .filter((r) => r.status === 200)
        .map((r) => JSON.parse(r.body) as Received)
        .filter((r) => r.to === to);
    await eventually(
      'both pagers have all 20',
      async () => [accepted('pager:ops').length, accepted('pager:oncall').length],
      ([a, b]) => a === 20 && b === 20,
      15_000,
    );
    const seqs = [...Array(20).keys()].map((i) => i + 1);
    expect(accepted('pager:ops').map((r) => r.seq)).toEqual(seqs);
    expect(accepted('pager:oncall').map((r) => r.seq)).toEqual(seqs);
    expect(accepted('pager:ops')[4]).toMatchObject({ body: 'page 5', attempt: 1 });
    // The retry went out under the same delivery id as the refused attempt.
    const fifth = pager.requests
      .map((r) => JSON.parse(r.body) as Received)
      .filter((r) => r.to === 'pager:ops' && r.seq === 5);
    expect(fifth.map((r) => r.attempt)).toEqual([0, 1]);
    expect(new Set(fifth.map((r) => r.id)).size).toBe(1);

    const status = await eventually(
      "message 5's status",
      () => messageStatus(node, ids[4] ?? '', 'ops'),
      (s) => s.channels?.pager?.delivered === 2,
    );
    expect(status).toMatchObject({
      recipients: 3,
      channels: { pager: { recipients: 2, queued: 0, sent: 0, delivered: 2, failed: 0 } },
    });
    const metrics = await (await fetch(`${node.url}/metrics`)).text();
    expect(metrics).toMatch(
      /threshold_outbox_jobs_total\{channel="pager",outcome="retried",code="error"\} 1/,
    );
    expect(metrics).toMatch(
      /threshold_outbox_jobs_total\{channel="pager",outcome="delivered",code=""\} 40/,
    );
  });

  it('webhooks: signed as Standard Webhooks, retried on 5xx, disabled on 410', async () => {
    let answer = 500;
    let secret = '';
    const verified: unknown[] = [];
    const hook = await receiver((req, body) => {
      // Throws on a bad signature: the request then fails the test below.
      verified.push(new Webhook(secret).verify(body, req.headers as Record<string, string>));
      const status = answer;
      if (answer === 500) answer = 200;
      return status;
    });
    const node = await startTestNode({
      name: 'webhook channel',
      overrides: { outbox: { backoffBaseMs: 50, backoffMaxMs: 100 } },
    });
    const put = await node.admin('PUT', '/v1/webhooks/billing', { url: hook.url });
    expect(put.status).toBe(201);
    ({ secret } = (await put.json()) as { secret: string });
    expect(secret).toMatch(/^whsec_/);
    await node.createRoom('invoices', ['webhook:billing']);

    const first = await node.admin('POST', '/v1/rooms/invoices/messages', { body: 'paid' });
    const { id } = (await first.json()) as { id: string };
    const status = await eventually(
      'delivered after one 500',
      () => messageStatus(node, id, 'invoices'),
      (s) => s.channels?.webhook?.delivered === 1,
      10_000,
    );
    expect(status).toMatchObject({ recipients: 1, channels: { webhook: { recipients: 1 } } });
    expect(hook.requests.map((r) => r.status)).toEqual([500, 200]);
    expect(verified[1]).toMatchObject({ type: 'message', room: 'invoices', seq: 1, body: 'paid' });
    // Both attempts carry the same webhook-id: the receiver can tell a retry from a new message.
    expect(hook.requests[0]?.headers['webhook-id']).toBe(hook.requests[1]?.headers['webhook-id']);

    answer = 410;
    const gone = await node.admin('POST', '/v1/rooms/invoices/messages', { body: 'refunded' });
    const goneId = ((await gone.json()) as { id: string }).id;
    await eventually(
      'failed, endpoint disabled',
      () => messageStatus(node, goneId, 'invoices'),
      (s) => s.channels?.webhook?.failed === 1,
    );
    expect(await (await node.admin('GET', '/v1/webhooks/billing')).json()).toMatchObject({
      disabled: true,
    });
    expect(hook.requests).toHaveLength(3);
  });
});

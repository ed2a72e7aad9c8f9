import { describe, expect, it, onTestFinished } from 'vitest';
import { post, signUp, testPhone } from '../helpers/accounts.ts';
import { admin, type MeshNode, startMesh } from '../helpers/mesh.ts';
import { createTestDatabase } from '../helpers/postgres.ts';
import { connect, type Frame } from '../helpers/ws-client.ts';

/** Invite events reach a member's WebSocket on whichever node it is (thr:member:notices). */
describe('invites over a mesh', () => {
  it('an invite sent on one node reaches the invitee on another, and the acceptance comes back', async () => {
    const db = await createTestDatabase();
    onTestFinished(() => db.drop());
    const mesh = await startMesh(2, { THRESHOLD_DATABASE_URL: db.url });
    const [a, b] = mesh.nodes as [MeshNode, MeshNode];
    const via = (n: MeshNode) => ({
      url: n.url,
      admin: (method: string, path: string, body?: unknown) => admin(n, method, path, body),
    });
    const ada = await signUp(via(a), testPhone(), { first: 'Ada' });
    const bobPhone = testPhone();
    const bob = await signUp(via(b), bobPhone);
    const adaWs = await connect(a.wsUrl, ada.token);
    const bobWs = await connect(b.wsUrl, bob.token);
    await Promise.all([adaWs.welcome, bobWs.welcome]);

    const sent = await post(a, '/v1/invites', { phone: bobPhone }, ada.token);
    expect(sent.status).toBe(201);
    const { id } = (await sent.json()) as { id: string };
    const is = (event: string) => (f: Frame) =>
      f.type === 'invite' && f.event === event && (f.invite as { id: string }).id === id;
    await bobWs.next(is('received'));
    const accepted = await post(b, `/v1/invites/${id}/accept`, {}, bob.token);
    expect(accepted.status).toBe(200);
    expect((await adaWs.next(is('accepted'))).invite).toMatchObject({ room: `c-${id}` });
  });
});

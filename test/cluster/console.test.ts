import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Page } from 'playwright-core';
import { describe, expect, it, onTestFinished } from 'vitest';
import { partitionOf } from '../../src/redis/keys.ts';
import { launchBrowser, newPage } from '../helpers/browser.ts';
import { serviceEnvelope } from '../helpers/envelope.ts';
import { eventually } from '../helpers/eventually.ts';
import { receiver } from '../helpers/http-receiver.ts';
import { admin, type MeshNode, PARTITIONS, sleep, startMesh } from '../helpers/mesh.ts';
import { ADMIN_TOKEN } from '../helpers/node.ts';
import { connect } from '../helpers/redis.ts';

/**
 * Where the screenshots go: with THRESHOLD_SCREENSHOTS=1, the README's "Web console" section
 * (docs/console/*.png, committed); otherwise a temporary folder, so a test run leaves the
 * working tree as it was (the screenshots are still taken, so they cannot break unseen).
 */
const SHOTS =
  process.env.THRESHOLD_SCREENSHOTS === '1'
    ? new URL('../../docs/console/', import.meta.url)
    : pathToFileURL(`${mkdtempSync(join(tmpdir(), 'threshold-console-'))}/`);

/** A screenshot of the console as it is now. */
async function shot(page: Page, name: string) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: new URL(`${name}.png`, SHOTS).pathname });
}

async function publish(node: MeshNode, room: string, body: string) {
  const res = await admin(node, 'POST', `/v1/rooms/${room}/messages`, { body });
  expect(res.status).toBe(202);
}

/**
 * The web console (issue 18) in headless Chromium against two real nodes: sign in, see both
 * nodes and their partitions, watch a message published over HTTP arrive in the room view,
 * and requeue a dead letter. It also takes the README's screenshots.
 */
describe('web console', () => {
  it('signs in, shows the mesh, a room live, throughput, dead letters and notifications', async () => {
    const mesh = await startMesh(2);
    const [a, b] = mesh.nodes as [MeshNode, MeshNode];
    const { owners } = await mesh.agreement();
    // A webhook that refuses every fourth delivery, so the charts show more than one outcome.
    let calls = 0;
    const hook = await receiver(() => (++calls % 4 === 0 ? 500 : 200));
    expect((await admin(a, 'PUT', '/v1/webhooks/ops', { url: hook.url })).status).toBe(201);
    const rooms = ['lobby', 'ops', 'support', 'alerts', 'news'];
    for (const room of rooms) {
      expect((await admin(a, 'POST', '/v1/rooms', { id: room, name: room })).status).toBe(201);
      for (const m of ['user:alice', 'user:bob', ...(room === 'lobby' ? [] : ['webhook:ops'])])
        expect((await admin(a, 'PUT', `/v1/rooms/${room}/members/${m}`)).status).toBe(201);
    }
    // Deliveries are counted by the partition's owner: load rooms node-1 owns, to see them there.
    const own = rooms.filter((r) => r !== 'lobby' && owners[partitionOf(r, PARTITIONS)] === a.id);
    const busy = own.length > 0 ? own : rooms.slice(1);
    await publish(a, 'lobby', 'first, from history');

    const page = await newPage(await launchBrowser());
    const failures: string[] = [];
    page.on('pageerror', (err) => failures.push(String(err)));
    page.on('console', (m) => m.type() === 'error' && failures.push(m.text()));
    await page.goto(`${a.url}/console`);

    // Sign in: a wrong token is refused, the admin token lets in; neither is in the URL.
    await page.fill('input[name=token]', 'not-the-token');
    await page.click('button[type=submit]');
    await page.getByRole('alert').filter({ hasText: 'Not a valid admin token' }).waitFor();
    expect(failures.filter((f) => !f.includes('401'))).toEqual([]);
    failures.length = 0;
    await page.fill('input[name=token]', ADMIN_TOKEN);
    await page.click('button[type=submit]');
    // Traffic for the throughput charts meanwhile: bursts of growing size, a few a second.
    let loading = true;
    onTestFinished(() => {
      loading = false;
    });
    const load = (async () => {
      for (let i = 0; loading; i++) {
        const burst = Array.from({ length: 1 + (i % 12) }, (_, j) =>
          publish(a, busy[j % busy.length]!, `load ${i}.${j}`),
        );
        await Promise.all([...burst, sleep(300)]).catch(() => undefined);
      }
    })();

    // Mesh: both nodes, each with the partitions every node agrees it owns.
    for (const node of [a, b]) {
      const count = owners.filter((o) => o === node.id).length;
      expect(count).toBeGreaterThan(0);
      const cell = page.locator(`tr[data-node="${node.id}"] .partitions-count`);
      await cell.filter({ hasText: String(count) }).waitFor();
    }
    expect(await page.locator('.partition').count()).toBe(PARTITIONS);
    await page
      .locator('.partition .meta', { hasText: /lease \d/ })
      .first()
      .waitFor();
    await shot(page, 'mesh');
    expect(page.url()).not.toContain(ADMIN_TOKEN);

    // Rooms: history first, then a message published over HTTP (to the other node) arrives live.
    await page.click('[data-view=rooms]');
    await page.fill('input.search', 'lob');
    await page.getByText(`1 of ${rooms.length} rooms`).waitFor();
    expect(await page.locator('button.room').count()).toBe(1);
    await page.click('button.room[data-room=lobby]');
    await page.locator('.message', { hasText: 'first, from history' }).waitFor();
    await page.locator('[data-live=live]').waitFor();
    await publish(b, 'lobby', 'hello from node-2 over HTTP');
    await page.locator('.message', { hasText: 'hello from node-2 over HTTP' }).waitFor();
    await publish(a, 'lobby', 'and a third');
    await page.locator('.message[data-seq="3"]', { hasText: 'and a third' }).waitFor();
    await page.locator('.members', { hasText: 'user:alice' }).waitFor();
    await shot(page, 'room');

    // Throughput: this node's counters as rates, sampled since sign-in, under the load above.
    await page.click('[data-view=charts]');
    // Ten samples (20 s since sign-in): enough of a curve for the screenshot.
    await eventually(
      'ten samples',
      () => page.getAttribute('#chart-ingress', 'data-samples'),
      (n) => Number(n) >= 10,
      30_000,
    );
    await page.locator('#chart-ingress .u-legend', { hasText: 'http' }).waitFor();
    await page.locator('#chart-deliveries .u-legend', { hasText: 'webhook' }).waitFor();
    await shot(page, 'charts');
    loading = false;
    await load;

    // Dead letters: a message for a room that does not exist (written straight into the
    // funnel, past ingress's check) is dead-lettered; once the room exists, requeue commits it.
    const redis = connect(mesh.redis.url);
    try {
      const envelope = serviceEnvelope('later', 'waited in the dead letters');
      await redis.xadd(
        `thr:{p${partitionOf('later', PARTITIONS)}}:funnel`,
        '*',
        'e',
        JSON.stringify(envelope),
      );
    } finally {
      await redis.quit();
    }
    await page.click('[data-view=dead]');
    const row = page.locator('tr[data-dead]', { hasText: 'waited in the dead letters' });
    await row.filter({ hasText: 'room_deleted' }).waitFor();
    await shot(page, 'dead-letters');
    expect((await admin(a, 'POST', '/v1/rooms', { id: 'later' })).status).toBe(201);
    await row.getByRole('button', { name: 'Requeue' }).click();
    await page.getByRole('status').filter({ hasText: 'requeued into the funnel' }).waitFor();
    await row.waitFor({ state: 'detached' });
    const history = await eventually(
      'the requeued message committed',
      async () =>
        (await (await admin(b, 'GET', '/v1/rooms/later/messages')).json()) as {
          messages: { body: string }[];
        },
      (h) => h.messages.length > 0,
    );
    expect(history.messages.map((m) => m.body)).toEqual(['waited in the dead letters']);
    expect(
      ((await (await admin(a, 'GET', '/v1/dead-letters')).json()) as { letters: unknown[] })
        .letters,
    ).toEqual([]);

    // Notifications: one sent from the page is followed to its outcome.
    await page.click('[data-view=notifications]');
    await page.fill('input[name=rooms]', 'support');
    await page.fill('input[name=body]', 'Maintenance at 18:00');
    await page.getByRole('button', { name: 'Send', exact: true }).click();
    // Its status as the node reports it, and its audience: the room's three members.
    const followed = page.locator('tr[data-notification]');
    await followed.locator('.badge', { hasText: /^(queued|dispatching|done)$/ }).waitFor();
    await followed.locator('td.recipients', { hasText: /^3$/ }).waitFor();
    await shot(page, 'notifications');

    expect(failures).toEqual([]);
  });
});

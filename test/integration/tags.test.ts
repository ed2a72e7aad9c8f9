import { describe, expect, it } from 'vitest';
import { as, startTestNode, type TestNode } from '../helpers/node.ts';
import { tempDir } from '../helpers/readme.ts';

/** `user:u0000` … : ids whose string order is their numeric order. */
const ids = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, i) => `user:u${String(from + i).padStart(5, '0')}`);

/** A node whose expansion reads 7 members a round trip, so small tags span several pages. */
async function tagNode(name: string): Promise<TestNode> {
  return startTestNode({
    name,
    overrides: { dataDir: await tempDir(name), tags: { expandPageSize: 7 } },
  });
}

async function upload(node: TestNode, tag: string, add: string[], remove: string[] = []) {
  const res = await node.admin('POST', `/v1/tags/${tag}/members`, { add, remove });
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as { tag: string; added: number; removed: number; members: number };
}

async function preview(node: TestNode, tags: string, limit?: number) {
  const res = await node.admin('POST', '/v1/tags/expand', { tags, limit });
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as { count: number; members: string[] };
}

async function problem(res: Response, status: number) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  return ((await res.json()) as { detail: string }).detail;
}

describe('tags', () => {
  it('adds, lists, pages, removes and deletes: a tag exists while it has members', async () => {
    const node = await tagNode('tags-crud');
    expect((await node.admin('PUT', '/v1/tags/staff/members/user:ann')).status).toBe(201);
    expect((await node.admin('PUT', '/v1/tags/staff/members/user:ann')).status).toBe(200);
    expect((await node.admin('PUT', '/v1/tags/staff/members/phone:+15551230001')).status).toBe(201);
    expect((await node.admin('PUT', '/v1/tags/ops.oncall/members/user:bob')).status).toBe(201);

    const listed = await (await node.admin('GET', '/v1/tags')).json();
    expect(listed).toEqual({
      tags: [
        { tag: 'ops.oncall', members: 1 },
        { tag: 'staff', members: 2 },
      ],
      next: null,
    });
    const first = await (await node.admin('GET', '/v1/tags?limit=1')).json();
    expect(first).toEqual({ tags: [{ tag: 'ops.oncall', members: 1 }], next: 'ops.oncall' });
    const second = await (await node.admin('GET', '/v1/tags?limit=1&cursor=ops.oncall')).json();
    // A full page: its last name is the cursor, and the page after it is empty.
    expect(second).toEqual({ tags: [{ tag: 'staff', members: 2 }], next: 'staff' });
    const third = await (await node.admin('GET', '/v1/tags?limit=1&cursor=staff')).json();
    expect(third).toEqual({ tags: [], next: null });

    expect(await (await node.admin('GET', '/v1/tags/staff/members')).json()).toEqual({
      tag: 'staff',
      members: ['phone:+15551230001', 'user:ann'],
      next: null,
    });

    expect((await node.admin('DELETE', '/v1/tags/staff/members/user:ann')).status).toBe(204);
    await problem(await node.admin('DELETE', '/v1/tags/staff/members/user:ann'), 404);
    // The last member goes: so does the tag.
    expect((await node.admin('DELETE', '/v1/tags/ops.oncall/members/user:bob')).status).toBe(204);
    await problem(await node.admin('GET', '/v1/tags/ops.oncall/members'), 404);
    expect(await (await node.admin('GET', '/v1/tags')).json()).toEqual({
      tags: [{ tag: 'staff', members: 1 }],
      next: null,
    });

    expect((await node.admin('DELETE', '/v1/tags/staff')).status).toBe(204);
    expect(await problem(await node.admin('DELETE', '/v1/tags/staff'), 404)).toBe(
      'tag staff does not exist',
    );
    expect(await (await node.admin('GET', '/v1/tags')).json()).toEqual({ tags: [], next: null });
  });

  it('takes a delta upload of 10,000 ids in one call, and pages its members in order', async () => {
    const node = await tagNode('tags-upload');
    const all = ids(0, 10_000);
    expect(await upload(node, 'all', all)).toEqual({
      tag: 'all',
      added: 10_000,
      removed: 0,
      members: 10_000,
    });
    // Again, with some removed and some new: a delta.
    expect(await upload(node, 'all', ids(10_000, 10_100), ids(0, 50))).toEqual({
      tag: 'all',
      added: 100,
      removed: 50,
      members: 10_050,
    });

    const seen: string[] = [];
    let cursor = '';
    for (let pages = 0; pages < 20; pages++) {
      const page = (await (
        await node.admin('GET', `/v1/tags/all/members?limit=1000&cursor=${cursor}`)
      ).json()) as { members: string[]; next: string | null };
      seen.push(...page.members);
      if (page.next === null) break;
      cursor = encodeURIComponent(page.next);
    }
    expect(seen).toEqual(ids(50, 10_100));
  });

  it('refuses bad names, bad member ids (by index), too many ids and unknown tags', async () => {
    const node = await tagNode('tags-400');
    expect(await problem(await node.admin('PUT', '/v1/tags/staff-x/members/user:ann'), 400)).toBe(
      'tag: expected a tag name: A-Z a-z 0-9 _ . (no spaces or - + & ( )), 1-64 characters',
    );
    await problem(await node.admin('PUT', `/v1/tags/${'t'.repeat(65)}/members/user:ann`), 400);
    await problem(await node.admin('PUT', '/v1/tags/staff/members/nobody'), 400);

    const add = ids(0, 20);
    add[17] = 'user:has space';
    const bad = await node.admin('POST', '/v1/tags/staff/members', { add });
    expect(await problem(bad, 400)).toMatch(/^add\.17: expected a member id/);
    const unreachable = await node.admin('POST', '/v1/tags/staff/members', {
      add: ['user:ann', 'pager:ops'],
    });
    expect(await problem(unreachable, 400)).toMatch(/^add\.1: no channel delivers to "pager:"/);
    const over = await node.admin('POST', '/v1/tags/staff/members', {
      add: ids(0, 6000),
      remove: ids(6000, 10_001),
    });
    expect(await problem(over, 400)).toBe('add, remove: 10001 ids; at most 10000 a call, together');
    const both = await node.admin('POST', '/v1/tags/staff/members', {
      add: ['user:ann'],
      remove: ['user:bob', 'user:ann'],
    });
    expect(await problem(both, 400)).toBe('remove.1: user:ann is also in add');
    // Nothing of the refused uploads was written.
    await problem(await node.admin('GET', '/v1/tags/staff/members'), 404);
    expect(await problem(await node.admin('DELETE', '/v1/tags/nothing'), 404)).toBe(
      'tag nothing does not exist',
    );
  });

  it('takes the admin or a key with the tags scope: 403 for a member and for other keys', async () => {
    const node = await tagNode('tags-auth');
    const key = async (scopes: string[]) => {
      const res = await node.admin('POST', '/v1/keys', { name: `k${scopes.length}`, scopes });
      expect(res.status, await res.clone().text()).toBe(201);
      return ((await res.json()) as { key: string }).key;
    };
    const tagsKey = as(node, await key(['tags']));
    const notifyKey = as(node, await key(['notify', 'publish:lobby']));
    const member = as(node, await node.token('user:ann'));

    expect((await tagsKey('PUT', '/v1/tags/staff/members/user:ann')).status).toBe(201);
    expect((await tagsKey('POST', '/v1/tags/staff/members', { add: ['user:bob'] })).status).toBe(
      200,
    );
    expect((await tagsKey('GET', '/v1/tags')).status).toBe(200);
    expect((await tagsKey('GET', '/v1/tags/staff/members')).status).toBe(200);
    expect((await tagsKey('POST', '/v1/tags/expand', { tags: 'staff' })).status).toBe(200);
    // The tags scope reaches the tag routes only.
    await problem(await tagsKey('GET', '/v1/rooms'), 403);

    for (const other of [notifyKey, member]) {
      for (const [method, path, body] of [
        ['GET', '/v1/tags'],
        ['GET', '/v1/tags/staff/members'],
        ['PUT', '/v1/tags/staff/members/user:eve'],
        ['DELETE', '/v1/tags/staff/members/user:ann'],
        ['POST', '/v1/tags/staff/members', { add: ['user:eve'] }],
        ['POST', '/v1/tags/expand', { tags: 'staff' }],
        ['DELETE', '/v1/tags/staff'],
      ] as const) {
        const detail = await problem(await other(method, path, body), 403);
        expect(detail).toBe('this route takes the admin token or an API key with the tags scope');
      }
    }
    expect((await tagsKey('DELETE', '/v1/tags/staff')).status).toBe(204);
  });

  it('expands staff - interns and a & (b + c) exactly, over tags of several pages', async () => {
    const node = await tagNode('tags-expand');
    await upload(node, 'staff', ids(0, 60));
    await upload(node, 'interns', [...ids(40, 80), ...ids(3, 5)]);
    await upload(node, 'a', ids(0, 50));
    await upload(node, 'b', ids(10, 20));
    await upload(node, 'c', [...ids(45, 100), 'phone:+15551230001']);

    const staff = await preview(node, 'staff - interns', 1000);
    const want = [...ids(0, 3), ...ids(5, 40)];
    expect(staff).toEqual({ count: want.length, members: want });
    // Written without spaces it is the same expression (no tag name holds a "-").
    expect(await preview(node, 'staff-interns', 1000)).toEqual(staff);
    expect(await preview(node, 'staff - interns', 5)).toEqual({
      count: want.length,
      members: want.slice(0, 5),
    });

    const abc = [...ids(10, 20), ...ids(45, 50)];
    expect(await preview(node, 'a & (b + c)', 1000)).toEqual({ count: abc.length, members: abc });
    // Without the parentheses & binds first: (a & b) + c.
    const ab_c = [...ids(10, 20), ...ids(45, 100), 'phone:+15551230001'].sort();
    expect(await preview(node, 'a & b + c', 1000)).toEqual({ count: ab_c.length, members: ab_c });
  });

  it('refuses a bad expression naming where, and an unknown tag naming it', async () => {
    const node = await tagNode('tags-expr-400');
    await upload(node, 'staff', ['user:ann']);
    const where = await node.admin('POST', '/v1/tags/expand', { tags: '(staff + )' });
    expect(await problem(where, 400)).toBe(
      'tags: at column 10: expected a tag name or "(", found ")"',
    );
    const unknown = await node.admin('POST', '/v1/tags/expand', { tags: 'staff - interns' });
    expect(await problem(unknown, 400)).toBe('tags: unknown tag "interns"');
    const many = Array.from({ length: 101 }, () => 'staff').join('+');
    expect(await problem(await node.admin('POST', '/v1/tags/expand', { tags: many }), 400)).toBe(
      'tags: at column 601: more than 100 tags in one expression',
    );
  });
});

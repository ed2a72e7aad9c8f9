import { randomInt } from 'node:crypto';
import { expect } from 'vitest';
import { eventually } from './eventually.ts';
import type { TestNode } from './node.ts';

/** A node as these helpers use it: its URL, and requests with the admin token. */
export type AdminClient = Pick<TestNode, 'url' | 'admin'>;

/** A valid US number nobody else in the run uses (libphonenumber refuses 555-01xx ones). */
export function testPhone(): string {
  return `+1201555${randomInt(0, 10_000).toString().padStart(4, '0')}`;
}

export const post = (node: Pick<TestNode, 'url'>, path: string, body: unknown, token?: string) =>
  fetch(`${node.url}${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: JSON.stringify(body),
  });

/** The code in the newest text to `phone` in the dev outbox, once there are `count` of them. */
export async function codeFor(node: AdminClient, phone: string, count = 1): Promise<string> {
  const texts = await eventually(
    `sign-in text ${count} to ${phone}`,
    async () => {
      const res = await node.admin('GET', '/v1/dev/outbox');
      const { texts } = (await res.json()) as { texts: { to: string; body: string }[] };
      return texts.filter((t) => t.to === phone);
    },
    (t) => t.length >= count,
  );
  const code = /\b(\d{6})\b/.exec(texts[texts.length - 1]?.body ?? '')?.[1];
  if (!code) throw new Error(`no code in ${JSON.stringify(texts)}`);
  return code;
}

/** Sign-up (or sign-in) by SMS code, end to end; returns the token and member id. */
export async function signUp(
  node: AdminClient,
  phone: string,
  names: { first?: string; last?: string } = {},
): Promise<{ token: string; member: string }> {
  const started = await post(node, '/v1/auth/phone/start', { phone, ...names });
  expect(started.status, await started.clone().text()).toBe(202);
  const sent = await countTexts(node, phone);
  const code = await codeFor(node, phone, sent);
  const verified = await post(node, '/v1/auth/phone/verify', { phone, code });
  expect(verified.status, await verified.clone().text()).toBe(200);
  return (await verified.json()) as { token: string; member: string };
}

async function countTexts(node: AdminClient, phone: string): Promise<number> {
  const res = await node.admin('GET', '/v1/dev/outbox');
  const { texts } = (await res.json()) as { texts: { to: string }[] };
  return Math.max(1, texts.filter((t) => t.to === phone).length);
}

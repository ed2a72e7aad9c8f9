import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { NotFoundError, ValidationError } from '../errors.ts';
import { RecipientId } from '../funnel/envelope.ts';
import { expand, type TagReader, validateTags } from '../notify/tag-expansion.ts';
import { parseTagExpression, TAG_NAME } from '../notify/tag-expression.ts';
import type { TagDelta, TagListPage } from '../notify/tags.ts';
import type { AppEnv } from './app.ts';
import { requireScope } from './auth.ts';
import { assertReachable, intQuery, memberParam, readJson } from './params.ts';

/** What the tag routes need of the tags (src/notify/tags.ts). */
export interface TagRoutesDeps {
  tags: TagReader & {
    apply(
      tag: string,
      delta: TagDelta,
    ): Promise<{ added: number; removed: number; members: number }>;
    add(tag: string, member: string): Promise<boolean>;
    remove(tag: string, member: string): Promise<boolean>;
    delete(tag: string): Promise<boolean>;
    list(cursor: string | undefined, limit: number): Promise<TagListPage>;
  };
  /** Member-id prefixes some channel reaches; others are refused. */
  memberPrefixes?: readonly string[] | undefined;
  options: TagSettings;
}

/** The `tags.*` settings. */
export interface TagSettings {
  /** Ids (add and remove together) one delta upload may carry. @default 10000 */
  maxUpload: number;
  /** Request body bytes of a delta upload (other routes keep http.maxBodyBytes). */
  maxUploadBytes: number;
  /** @default 1000 */
  maxExpressionLength: number;
  /** @default 100 */
  maxExpressionTags: number;
  /** Members read from a tag per round trip while expanding. @default 1000 */
  expandPageSize: number;
}

/** The delta upload's path, which takes `tags.maxUploadBytes` rather than http.maxBodyBytes. */
export const TAG_UPLOAD_PATH = /^\/v1\/tags\/[^/]+\/members$/;

const MAX_PAGE = 1000;
const NAME_RULE = 'expected a tag name: A-Z a-z 0-9 _ . (no spaces or - + & ( )), 1-64 characters';

export const ExpandBody = z
  .object({
    tags: z.string(),
    limit: z.number().int().min(1).max(MAX_PAGE).optional(),
  })
  .strict();

function tagParam(c: Context): string {
  const tag = c.req.param('tag') ?? '';
  if (!TAG_NAME.test(tag)) throw new ValidationError(`tag: ${NAME_RULE}`, 'tag');
  return tag;
}

function cursorQuery(c: Context, check?: (v: string) => boolean): string | undefined {
  const cursor = c.req.query('cursor');
  if (cursor === undefined || cursor === '') return undefined;
  if (check && !check(cursor)) throw new ValidationError(`cursor: not a cursor this list gave`);
  return cursor;
}

/** A delta upload's body; `maxUpload` is the node's tags.maxUpload. */
export const deltaBody = (maxUpload: number) =>
  z
    .object({
      add: z.array(RecipientId).max(maxUpload).optional(),
      remove: z.array(RecipientId).max(maxUpload).optional(),
    })
    .strict();

/**
 * Tags (DESIGN §5, README "Tags"): named sets of members, uploaded by the operator's backend
 * and addressed by tag expressions. Every route takes the admin or a key with the tags scope.
 */
export function mountTags(app: Hono<AppEnv>, deps: TagRoutesDeps): void {
  const { tags, memberPrefixes, options } = deps;
  const DeltaBody = deltaBody(options.maxUpload);
  const scope = (c: Context<AppEnv>) => requireScope(c.get('principal'), 'tags');

  app.get('/v1/tags', async (c) => {
    scope(c);
    const limit = intQuery(c, 'limit', 100, 1, MAX_PAGE);
    return c.json(
      await tags.list(
        cursorQuery(c, (v) => TAG_NAME.test(v)),
        limit,
      ),
    );
  });

  // Operators' preview of an expression: how many it reaches and the first of them.
  app.post('/v1/tags/expand', async (c) => {
    scope(c);
    const body = await readJson(c, ExpandBody);
    const ast = parseTagExpression(body.tags, {
      maxLength: options.maxExpressionLength,
      maxTags: options.maxExpressionTags,
    });
    await validateTags(ast, tags);
    const limit = body.limit ?? 100;
    const members: string[] = [];
    let count = 0;
    for await (const page of expand(ast, tags, { pageSize: options.expandPageSize })) {
      if (members.length < limit) members.push(...page.slice(0, limit - members.length));
      count += page.length;
    }
    return c.json({ count, members });
  });

  app.put('/v1/tags/:tag/members/:member', async (c) => {
    scope(c);
    const tag = tagParam(c);
    const member = memberParam(c);
    assertReachable(member, memberPrefixes, 'member');
    const added = await tags.add(tag, member);
    return c.json({ tag, member }, added ? 201 : 200);
  });

  app.delete('/v1/tags/:tag/members/:member', async (c) => {
    scope(c);
    const tag = tagParam(c);
    const member = memberParam(c);
    if (!(await tags.remove(tag, member)))
      throw new NotFoundError(`${member} is not a member of tag ${tag}`);
    return c.body(null, 204);
  });

  app.post('/v1/tags/:tag/members', async (c) => {
    scope(c);
    const tag = tagParam(c);
    const { add = [], remove = [] } = await readJson(c, DeltaBody);
    if (add.length + remove.length > options.maxUpload)
      throw new ValidationError(
        `add, remove: ${add.length + remove.length} ids; at most ${options.maxUpload} a call, together`,
        'add',
      );
    add.forEach((m, i) => assertReachable(m, memberPrefixes, `add.${i}`));
    const adding = new Set(add);
    const both = remove.findIndex((m) => adding.has(m));
    if (both >= 0)
      throw new ValidationError(`remove.${both}: ${remove[both]} is also in add`, `remove.${both}`);
    return c.json({ tag, ...(await tags.apply(tag, { add, remove })) });
  });

  app.get('/v1/tags/:tag/members', async (c) => {
    scope(c);
    const tag = tagParam(c);
    const limit = intQuery(c, 'limit', 100, 1, MAX_PAGE);
    const cursor = cursorQuery(c);
    const [exists] = await tags.exist([tag]);
    if (!exists) throw new NotFoundError(`tag ${tag} does not exist`);
    const members = await tags.range(tag, cursor, limit);
    return c.json({ tag, members, next: members.length === limit ? members.at(-1) : null });
  });

  app.delete('/v1/tags/:tag', async (c) => {
    scope(c);
    const tag = tagParam(c);
    if (!(await tags.delete(tag))) throw new NotFoundError(`tag ${tag} does not exist`);
    return c.body(null, 204);
  });
}

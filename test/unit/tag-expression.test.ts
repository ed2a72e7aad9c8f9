import { describe, expect, it } from 'vitest';
import { ValidationError } from '../../src/errors.ts';
import {
  countExpansion,
  expand,
  type TagReader,
  validateTags,
} from '../../src/notify/tag-expansion.ts';
import {
  ExpressionError,
  formatTagExpression,
  parseTagExpression,
  type TagExpression,
  tagNames,
} from '../../src/notify/tag-expression.ts';

const show = (source: string) => formatTagExpression(parseTagExpression(source));

function errorOf(source: string, options?: Parameters<typeof parseTagExpression>[1]): Error {
  try {
    parseTagExpression(source, options);
  } catch (err) {
    return err as Error;
  }
  throw new Error(`${JSON.stringify(source)} parsed`);
}

describe('parseTagExpression', () => {
  it.each([
    ['staff', 'staff'],
    ['a + b', '(a + b)'],
    ['a & b', '(a & b)'],
    ['a - b', '(a - b)'],
    // & binds tighter than + and -, which are left-associative at one level.
    ['a + b & c', '(a + (b & c))'],
    ['a & b + c', '((a & b) + c)'],
    ['a - b & c', '(a - (b & c))'],
    ['a + b - c', '((a + b) - c)'],
    ['a - b + c', '((a - b) + c)'],
    ['a - b - c', '((a - b) - c)'],
    ['a & b & c', '((a & b) & c)'],
    ['(a + b) & c', '((a + b) & c)'],
    ['a & (b + c)', '(a & (b + c))'],
    ['a - (b - c)', '(a - (b - c))'],
    ['((a))', 'a'],
    // `-` is never part of a name, so no spaces are needed around operators.
    ['staff-interns', '(staff - interns)'],
    ['x.1&(y_2+Z)', '(x.1 & (y_2 + Z))'],
    ['  a\t+\n b  ', '(a + b)'],
  ])('%j is %s', (source, shown) => {
    expect(show(source)).toBe(shown);
  });

  it('takes any number of tags up to the limit', () => {
    const names = Array.from({ length: 100 }, (_, i) => `t${i}`);
    expect(tagNames(parseTagExpression(names.join(' + ')))).toEqual(names);
    expect(tagNames(parseTagExpression('a + b & a - (c + b)'))).toEqual(['a', 'b', 'c']);
  });

  it.each([
    ['(staff + )', 'tags: at column 10: expected a tag name or "(", found ")"'],
    ['', 'tags: at column 1: expected a tag name or "(", found the end of the expression'],
    ['   ', 'tags: at column 4: expected a tag name or "(", found the end of the expression'],
    ['a b', 'tags: at column 3: expected "+", "-", "&" or the end of the expression, found "b"'],
    ['a)', 'tags: at column 2: expected "+", "-", "&" or the end of the expression, found ")"'],
    ['(a + b', 'tags: at column 7: expected "+", "-", "&" or ")", found the end of the expression'],
    ['(a (b))', 'tags: at column 4: expected "+", "-", "&" or ")", found "("'],
    ['a + !b', 'tags: at column 5: expected a tag name or "(", found "!"'],
    ['a ++ b', 'tags: at column 4: expected a tag name or "(", found "+"'],
    ['a | b', 'tags: at column 3: expected "+", "-", "&" or the end of the expression, found "|"'],
    ['-a', 'tags: at column 1: expected a tag name or "(", found "-"'],
    ['a & ()', 'tags: at column 6: expected a tag name or "(", found ")"'],
    [
      `ok + ${'x'.repeat(65)}`,
      'tags: at column 6: tag name "xxxxxxxxxxxxxxxxxxxx…" is longer than 64 characters',
    ],
  ])('%j is a 400 naming the column: %s', (source, message) => {
    const err = errorOf(source);
    expect(err).toBeInstanceOf(ExpressionError);
    expect(err).toBeInstanceOf(ValidationError);
    expect(err).toMatchObject({ status: 400, code: 'invalid_request', field: 'tags', message });
  });

  it('refuses an expression over the length and tag limits, naming the field it came in', () => {
    const long = `a + ${'b'.repeat(1000)}`;
    expect(errorOf(long).message).toBe(
      'tags: the expression is 1004 characters long; at most 1000',
    );
    const many = Array.from({ length: 101 }, (_, i) => `t${i}`).join(' + ');
    const err = errorOf(many) as ExpressionError;
    expect(err.message).toBe(
      `tags: at column ${many.indexOf('t100') + 1}: more than 100 tags in one expression`,
    );
    expect(errorOf('a + a + a', { maxTags: 2, field: 'to.tags' }).message).toBe(
      'to.tags: at column 9: more than 2 tags in one expression',
    );
  });
});

/** A TagReader over sets in memory that records every read. */
class FakeTags implements TagReader {
  readonly reads: { tag: string; limit: number }[] = [];
  private readonly sorted = new Map<string, string[]>();

  constructor(tags: Record<string, Iterable<string>>) {
    for (const [tag, members] of Object.entries(tags))
      this.sorted.set(tag, [...new Set(members)].sort());
  }

  async range(tag: string, after: string | undefined, limit: number): Promise<string[]> {
    this.reads.push({ tag, limit });
    const all = this.sorted.get(tag) ?? [];
    const start = after === undefined ? 0 : all.findIndex((m) => m > after);
    return start < 0 ? [] : all.slice(start, start + limit);
  }

  async exist(tags: readonly string[]): Promise<boolean[]> {
    return tags.map((t) => (this.sorted.get(t)?.length ?? 0) > 0);
  }
}

/** The naive evaluation the streaming one must agree with. */
function naive(ast: TagExpression, tags: Record<string, Set<string>>): Set<string> {
  if (ast.kind === 'tag') return tags[ast.name] ?? new Set();
  const l = naive(ast.left, tags);
  const r = naive(ast.right, tags);
  if (ast.op === '+') return new Set([...l, ...r]);
  if (ast.op === '&') return new Set([...l].filter((m) => r.has(m)));
  return new Set([...l].filter((m) => !r.has(m)));
}

/** mulberry32: a small seeded PRNG, so the random cases are the same on every run. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function collect(pages: AsyncIterable<string[]>, pageSize: number): Promise<string[]> {
  const all: string[] = [];
  for await (const page of pages) {
    expect(page.length).toBeGreaterThan(0);
    expect(page.length).toBeLessThanOrEqual(pageSize);
    all.push(...page);
  }
  return all;
}

describe('expand', () => {
  it('agrees with a naive Set evaluation over random tags and expressions', async () => {
    const random = prng(20261206);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
    for (let round = 0; round < 40; round++) {
      // Some dense, some sparse, one empty; ids that sort as strings, not as numbers.
      const universe = Array.from({ length: 40 + Math.floor(random() * 160) }, (_, i) =>
        pick(['user:', 'phone:+1555', 'webhook:']).concat(String(i * 7)),
      );
      const names = ['a', 'b', 'c', 'd', 'e', 'empty'];
      const sets: Record<string, Set<string>> = {};
      for (const name of names) {
        const density = name === 'empty' ? 0 : random();
        sets[name] = new Set(universe.filter(() => random() < density));
      }
      const store = new FakeTags(sets);
      const build = (depth: number): string =>
        depth === 0 || random() < 0.3
          ? pick(names)
          : `(${build(depth - 1)} ${pick(['+', '&', '-'])} ${build(depth - 1)})`;
      for (let i = 0; i < 25; i++) {
        // Without the outer parentheses: precedence decides, and both sides use the same AST.
        const source = build(4).replace(/^\((.*)\)$/, '$1');
        const ast = parseTagExpression(source);
        const pageSize = 1 + Math.floor(random() * 9);
        const want = [...naive(ast, sets)].sort();
        const got = await collect(expand(ast, store, { pageSize }), pageSize);
        expect(got, `${source} with pages of ${pageSize}`).toEqual(want);
        expect(await countExpansion(ast, store, { pageSize })).toBe(want.length);
      }
    }
  });

  it('staff - interns and a & (b + c) over several pages', async () => {
    const ids = (from: number, to: number) =>
      Array.from({ length: to - from }, (_, i) => `user:u${String(from + i).padStart(3, '0')}`);
    const store = new FakeTags({
      staff: ids(0, 60),
      interns: ids(40, 80),
      a: ids(0, 50),
      b: ids(10, 20),
      c: ids(45, 100),
    });
    const pageSize = 4;
    expect(
      await collect(expand(parseTagExpression('staff - interns'), store, { pageSize }), 4),
    ).toEqual(ids(0, 40));
    expect(
      await collect(expand(parseTagExpression('a & (b + c)'), store, { pageSize }), 4),
    ).toEqual([...ids(10, 20), ...ids(45, 50)]);
  });

  it('reads a page per tag at a time: the first page of 100,000 needs a few reads, not all', async () => {
    const all = Array.from({ length: 100_000 }, (_, i) => `user:${i}`);
    const store = new FakeTags({ all, muted: all.filter((_, i) => i % 10 === 0) });
    const pages = expand(parseTagExpression('all - muted'), store, { pageSize: 100 });
    const first = await pages.next();
    expect(first.value).toHaveLength(100);
    await pages.return(undefined);
    expect(store.reads.every((r) => r.limit === 100)).toBe(true);
    // The page being merged and the one read ahead, per tag.
    expect(store.reads.length).toBeLessThanOrEqual(6);
  });

  it('validateTags refuses a tag without members, naming it', async () => {
    const store = new FakeTags({ staff: ['user:ann'], gone: [] });
    await expect(validateTags(parseTagExpression('staff - gone'), store)).rejects.toThrow(
      'tags: unknown tag "gone"',
    );
    await expect(validateTags(parseTagExpression('staff'), store)).resolves.toBeUndefined();
  });
});

import { ValidationError } from '../errors.ts';
import { type TagExpression, tagNames } from './tag-expression.ts';

/**
 * What expansion reads of the tags (tags.ts): a tag's members in ascending lexicographic
 * order after a given one, a page at a time, and whether tags exist.
 */
export interface TagReader {
  /** Up to `limit` members of `tag` greater than `after` (from the first when undefined). */
  range(tag: string, after: string | undefined, limit: number): Promise<string[]>;
  /** For each tag, whether it has members. */
  exist(tags: readonly string[]): Promise<boolean[]>;
}

export interface ExpandOptions {
  /** Members read from a tag per round trip, and members per yielded page. @default 1000 */
  pageSize?: number;
}

const DEFAULT_PAGE_SIZE = 1000;

/** Refuses an expression naming a tag that has no members: `tags: unknown tag "<name>"`. */
export async function validateTags(
  ast: TagExpression,
  store: Pick<TagReader, 'exist'>,
  field = 'tags',
): Promise<void> {
  const names = tagNames(ast);
  const exist = await store.exist(names);
  const missing = names.find((_, i) => !exist[i]);
  if (missing !== undefined) throw new ValidationError(`${field}: unknown tag "${missing}"`, field);
}

/**
 * The members an expression names, in ascending lexicographic order, each once, as pages of
 * at most `pageSize`. Evaluated as a streaming merge: each leaf is a cursor over its sorted
 * set, `+` merges, `&` merge-joins and `-` anti-joins sorted streams, so memory stays about
 * two pages per leaf (the page being merged and the next one being read), however large the
 * tags. Member ids are ASCII, so JavaScript's string order is Redis' BYLEX (byte) order.
 */
export async function* expand(
  ast: TagExpression,
  store: Pick<TagReader, 'range'>,
  options: ExpandOptions = {},
): AsyncGenerator<string[]> {
  // Every stream below yields pages of at most pageSize, none empty: the root's are the answer.
  yield* pagesOf(ast, store, options.pageSize ?? DEFAULT_PAGE_SIZE);
}

/** Counts the members an expression names, streaming as `expand` does. */
export async function countExpansion(
  ast: TagExpression,
  store: Pick<TagReader, 'range'>,
  options: ExpandOptions = {},
): Promise<number> {
  let count = 0;
  for await (const page of expand(ast, store, options)) count += page.length;
  return count;
}

/**
 * A sorted stream read a page at a time. `buffered` says, without waiting, whether a head is
 * at hand; `fill()` waits for the next page when it is not (false at the end).
 */
class Cursor {
  private page: string[] = [];
  private i = 0;
  private done = false;

  constructor(private readonly pages: AsyncIterator<string[]>) {}

  get buffered(): boolean {
    return this.i < this.page.length;
  }

  async fill(): Promise<boolean> {
    while (this.i >= this.page.length) {
      if (this.done) return false;
      const next = await this.pages.next();
      if (next.done) {
        this.done = true;
        return false;
      }
      this.page = next.value;
      this.i = 0;
    }
    return true;
  }

  /** The head; only while buffered. */
  get head(): string {
    return this.page[this.i]!;
  }

  take(): string {
    return this.page[this.i++]!;
  }

  skip(): void {
    this.i++;
  }
}

function pagesOf(
  node: TagExpression,
  store: Pick<TagReader, 'range'>,
  size: number,
): AsyncGenerator<string[]> {
  if (node.kind === 'tag') return readTag(store, node.name, size);
  const left = new Cursor(pagesOf(node.left, store, size));
  const right = new Cursor(pagesOf(node.right, store, size));
  const combine = node.op === '+' ? union : node.op === '&' ? intersection : difference;
  return combine(left, right, size);
}

/** A tag's members a page at a time, the next page requested while this one is merged. */
async function* readTag(
  store: Pick<TagReader, 'range'>,
  tag: string,
  size: number,
): AsyncGenerator<string[]> {
  let pending: Promise<string[]> | undefined = store.range(tag, undefined, size);
  while (pending) {
    const page: string[] = await pending;
    pending = page.length === size ? store.range(tag, page.at(-1), size) : undefined;
    // A consumer that stops early leaves this read unawaited: its failure is no crash.
    pending?.catch(() => {});
    if (page.length > 0) yield page;
  }
}

/** Collects a merge's output into pages of `size`. */
class Pager {
  page: string[] = [];
  constructor(private readonly size: number) {}
  push(member: string): boolean {
    this.page.push(member);
    return this.page.length >= this.size;
  }
  flush(): string[] {
    const page = this.page;
    this.page = [];
    return page;
  }
}

async function* union(a: Cursor, b: Cursor, size: number): AsyncGenerator<string[]> {
  const out = new Pager(size);
  for (;;) {
    const hasA = a.buffered || (await a.fill());
    const hasB = b.buffered || (await b.fill());
    if (!hasA && !hasB) break;
    let full: boolean;
    if (!hasB || (hasA && a.head < b.head)) full = out.push(a.take());
    else if (!hasA || b.head < a.head) full = out.push(b.take());
    else {
      b.skip();
      full = out.push(a.take());
    }
    if (full) yield out.flush();
  }
  if (out.page.length > 0) yield out.flush();
}

async function* intersection(a: Cursor, b: Cursor, size: number): AsyncGenerator<string[]> {
  const out = new Pager(size);
  while ((a.buffered || (await a.fill())) && (b.buffered || (await b.fill()))) {
    if (a.head < b.head) a.skip();
    else if (b.head < a.head) b.skip();
    else {
      b.skip();
      if (out.push(a.take())) yield out.flush();
    }
  }
  if (out.page.length > 0) yield out.flush();
}

async function* difference(a: Cursor, b: Cursor, size: number): AsyncGenerator<string[]> {
  const out = new Pager(size);
  while (a.buffered || (await a.fill())) {
    const head = a.take();
    let excluded = false;
    while (b.buffered || (await b.fill())) {
      if (b.head < head) b.skip();
      else {
        excluded = b.head === head;
        break;
      }
    }
    if (!excluded && out.push(head)) yield out.flush();
  }
  if (out.page.length > 0) yield out.flush();
}

import { ValidationError } from '../errors.ts';

/** Tag names: the expression's operators (`+ & - ( )`) and spaces can never be part of one. */
export const TAG_NAME = /^[A-Za-z0-9_.]{1,64}$/;
const NAME_CHAR = /[A-Za-z0-9_.]/;
const MAX_NAME = 64;

export type TagOperator = '+' | '&' | '-';

/** A parsed tag expression: a tag, or an operator over two expressions. */
export type TagExpression =
  | { kind: 'tag'; name: string }
  | { kind: 'op'; op: TagOperator; left: TagExpression; right: TagExpression };

export interface ParseOptions {
  /** The request field the expression came in, which error messages start with. @default 'tags' */
  field?: string;
  /** @default 1000 */
  maxLength?: number;
  /** Tags an expression may name, counted each time they appear. @default 100 */
  maxTags?: number;
}

export const DEFAULT_PARSE_OPTIONS: Required<ParseOptions> = {
  field: 'tags',
  maxLength: 1000,
  maxTags: 100,
};

/** A malformed expression: a 400 naming the 1-based column and what was expected there. */
export class ExpressionError extends ValidationError {
  constructor(
    field: string,
    readonly column: number,
    detail: string,
  ) {
    super(`${field}: at column ${column}: ${detail}`, field);
    this.name = 'ExpressionError';
  }
}

interface Token {
  /** A tag name, an operator or parenthesis, or '' at the end. */
  text: string;
  kind: 'name' | 'op' | '(' | ')' | 'end' | 'bad';
  column: number;
}

/**
 * Parses `a + b` (either), `a & b` (both), `a - b` (a but not b) and parentheses. `&` binds
 * tighter than `+` and `-`, which are left-associative at one level: `a + b - c` is
 * `(a + b) - c`, and `a - b & c` is `a - (b & c)`.
 *
 *     expr   := term (("+" | "-") term)*
 *     term   := factor ("&" factor)*
 *     factor := NAME | "(" expr ")"
 */
export function parseTagExpression(source: string, options: ParseOptions = {}): TagExpression {
  const { field, maxLength, maxTags } = { ...DEFAULT_PARSE_OPTIONS, ...options };
  if (source.length > maxLength)
    throw new ValidationError(
      `${field}: the expression is ${source.length} characters long; at most ${maxLength}`,
      field,
    );
  let pos = 0;
  let token = next();
  let tags = 0;

  function next(): Token {
    while (pos < source.length && /\s/.test(source[pos]!)) pos++;
    const column = pos + 1;
    const c = source[pos];
    if (c === undefined) return { text: '', kind: 'end', column };
    if (c === '+' || c === '&' || c === '-') {
      pos++;
      return { text: c, kind: 'op', column };
    }
    if (c === '(' || c === ')') {
      pos++;
      return { text: c, kind: c, column };
    }
    if (!NAME_CHAR.test(c)) {
      pos++;
      return { text: c, kind: 'bad', column };
    }
    const start = pos;
    while (pos < source.length && NAME_CHAR.test(source[pos]!)) pos++;
    return { text: source.slice(start, pos), kind: 'name', column };
  }

  function fail(expected: string): never {
    const found =
      token.kind === 'end'
        ? 'the end of the expression'
        : JSON.stringify(token.kind === 'name' ? clip(token.text) : token.text);
    throw new ExpressionError(field, token.column, `expected ${expected}, found ${found}`);
  }

  function expr(): TagExpression {
    let left = term();
    while (token.text === '+' || token.text === '-') {
      const op = token.text;
      token = next();
      left = { kind: 'op', op, left, right: term() };
    }
    return left;
  }

  function term(): TagExpression {
    let left = factor();
    while (token.text === '&') {
      token = next();
      left = { kind: 'op', op: '&', left, right: factor() };
    }
    return left;
  }

  function factor(): TagExpression {
    if (token.kind === '(') {
      token = next();
      const inner = expr();
      if (token.kind !== ')') fail('"+", "-", "&" or ")"');
      token = next();
      return inner;
    }
    if (token.kind !== 'name') fail('a tag name or "("');
    if (token.text.length > MAX_NAME)
      throw new ExpressionError(
        field,
        token.column,
        `tag name "${clip(token.text)}" is longer than ${MAX_NAME} characters`,
      );
    if (++tags > maxTags)
      throw new ExpressionError(field, token.column, `more than ${maxTags} tags in one expression`);
    const leaf: TagExpression = { kind: 'tag', name: token.text };
    token = next();
    return leaf;
  }

  const ast = expr();
  if (token.kind !== 'end') fail('"+", "-", "&" or the end of the expression');
  return ast;
}

function clip(name: string): string {
  return name.length > MAX_NAME ? `${name.slice(0, 20)}…` : name;
}

/** The distinct tags an expression names, in the order they first appear. */
export function tagNames(ast: TagExpression): string[] {
  const names = new Set<string>();
  const walk = (node: TagExpression): void => {
    if (node.kind === 'tag') names.add(node.name);
    else {
      walk(node.left);
      walk(node.right);
    }
  };
  walk(ast);
  return [...names];
}

/** The expression written back with every operation parenthesised: for logs and tests. */
export function formatTagExpression(ast: TagExpression): string {
  return ast.kind === 'tag'
    ? ast.name
    : `(${formatTagExpression(ast.left)} ${ast.op} ${formatTagExpression(ast.right)})`;
}

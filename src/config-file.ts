import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { ConfigError } from './errors.ts';

/*
 * Config files (`config/default.json`, `--config FILE`) and the plug-in lists only they can
 * set (`channels`, `sources`, `validators`, `handlers`): their module paths are resolved
 * against the file that names them.
 */

/** Plug-in names (`channels[].name`…): they appear in logs, metrics, ids and member ids. */
export const PLUGIN_NAME = /^[a-z][a-z0-9_-]{0,31}$/;

/** Each plug-in family's built-in modules; any other `module` is a package or a file. */
export const BUILT_INS = {
  channels: ['sms', 'webhook', 'push'],
  sources: ['http', 'websocket', 'twilio', 'mqtt'],
  validators: ['max-length', 'deny-words'],
  handlers: ['echo'],
} as const;
export type PluginFamily = keyof typeof BUILT_INS;
export const PLUGIN_FAMILIES = Object.keys(BUILT_INS) as PluginFamily[];

/** Channels that ship with Threshold. */
export const BUILT_IN_CHANNELS = BUILT_INS.channels;

/** A module given as a file path: resolved against the directory of the file that names it. */
const isFilePath = (module: string) => /^(\.\.?\/|\/)/.test(module);
/** An npm package name, optionally with a subpath (`@acme/pager`, `pager/channel`). */
const PACKAGE_NAME = /^(@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*(\/[^\s]*)?$/;

/** One entry of a plug-in list: `{ name, module, options }`. */
function pluginSetting(family: PluginFamily) {
  const builtIns: readonly string[] = BUILT_INS[family];
  const kind = family.slice(0, -1);
  return z
    .object({
      name: z
        .string()
        .regex(PLUGIN_NAME, 'expected 1-32 characters of a-z 0-9 _ -, starting with a letter'),
      /**
       * A built-in, a package name, or a file: a file path in a config file is stored as a
       * `file://` URL, resolved against that file's directory.
       */
      module: z
        .string()
        .refine((m) => builtIns.includes(m) || m.startsWith('file://') || PACKAGE_NAME.test(m), {
          message: `expected a built-in ${kind} (${builtIns.join(', ')}), a package name, or a file path starting with ./, ../ or /`,
        }),
      /** Passed to the plug-in's factory as `ctx.options`, as written. */
      options: z.record(z.string(), z.unknown()).default({}),
    })
    .strict();
}

/** A plug-in family's list: unique names. */
export function pluginList(family: PluginFamily) {
  const kind = family.slice(0, -1);
  return z.array(pluginSetting(family)).superRefine((list, ctx) => {
    const seen = new Set<string>();
    list.forEach((entry, i) => {
      if (seen.has(entry.name)) {
        ctx.addIssue({
          code: 'custom',
          path: [i, 'name'],
          message: `duplicate ${kind} name "${entry.name}": each ${kind} needs its own name`,
        });
      }
      seen.add(entry.name);
    });
  });
}

export type PluginSetting = z.infer<ReturnType<typeof pluginSetting>>;
export type ChannelSetting = PluginSetting;

/**
 * One JSON config file, its channels' file paths resolved against its directory. A missing
 * or malformed file is a ConfigError naming it.
 */
export function readConfigFile(path: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : err instanceof SyntaxError
          ? `not valid JSON: ${err.message}`
          : (err as Error).message;
    throw new ConfigError('config', `cannot read config file ${path}: ${why}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ConfigError('config', `config file ${path}: expected a JSON object of settings`);
  }
  return withResolvedModules(value as Record<string, unknown>, dirname(path));
}

/** The settings with the file paths of every plug-in list's modules resolved against `dir`. */
export function withResolvedModules(
  settings: Record<string, unknown>,
  dir: string,
): Record<string, unknown> {
  const out = { ...settings };
  for (const family of PLUGIN_FAMILIES) {
    const list = out[family];
    if (Array.isArray(list)) out[family] = list.map((entry: unknown) => resolved(entry, dir));
  }
  return out;
}

function resolved(entry: unknown, dir: string): unknown {
  if (entry === null || typeof entry !== 'object') return entry;
  const { module } = entry as { module?: unknown };
  if (typeof module !== 'string' || !isFilePath(module)) return entry;
  return { ...entry, module: pathToFileURL(resolve(dir, module)).href };
}

/** Keys of a config file that are no setting (typos), as `a.b` paths. */
export function unknownKeys(
  file: Record<string, unknown>,
  known: Record<string, unknown>,
  path: string[] = [],
): string[] {
  return Object.entries(file).flatMap(([key, value]) => {
    if (!Object.hasOwn(known, key)) return [[...path, key].join('.')];
    const expected = known[key];
    return isPlainObject(value) && isPlainObject(expected)
      ? unknownKeys(value, expected, [...path, key])
      : [];
  });
}

export const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

export function merge(
  base: Record<string, unknown>,
  top: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(top)) {
    const prev = out[key];
    out[key] =
      value &&
      typeof value === 'object' &&
      !Array.isArray(value) &&
      prev &&
      typeof prev === 'object'
        ? merge(prev as Record<string, unknown>, value as Record<string, unknown>)
        : value;
  }
  return out;
}

import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { ConfigError } from './errors.ts';

/*
 * Config files (`config/default.json`, `--config FILE`) and the plug-in lists only they can
 * set (`channels`): their module paths are resolved against the file that names them.
 */

/** Plug-in names (`channels[].name`): they appear in logs, metrics and member ids. */
export const PLUGIN_NAME = /^[a-z][a-z0-9_-]{0,31}$/;

/** Channels that ship with Threshold; any other `module` is a package or a file. */
export const BUILT_IN_CHANNELS = ['sms', 'webhook'] as const;

/** A module given as a file path: resolved against the directory of the file that names it. */
const isFilePath = (module: string) => /^(\.\.?\/|\/)/.test(module);
/** An npm package name, optionally with a subpath (`@acme/pager`, `pager/channel`). */
const PACKAGE_NAME = /^(@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*(\/[^\s]*)?$/;

export const ChannelSetting = z
  .object({
    name: z
      .string()
      .regex(PLUGIN_NAME, 'expected 1-32 characters of a-z 0-9 _ -, starting with a letter'),
    /**
     * A built-in channel (`sms`, `webhook`), a package name, or a file: a file path in a
     * config file is stored as a `file://` URL, resolved against that file's directory.
     */
    module: z
      .string()
      .refine(
        (m) =>
          (BUILT_IN_CHANNELS as readonly string[]).includes(m) ||
          m.startsWith('file://') ||
          PACKAGE_NAME.test(m),
        {
          message: `expected a built-in channel (${BUILT_IN_CHANNELS.join(', ')}), a package name, or a file path starting with ./, ../ or /`,
        },
      ),
    /** Passed to the channel's factory as `ctx.options`, as written. */
    options: z.record(z.string(), z.unknown()).default({}),
  })
  .strict();
export type ChannelSetting = z.infer<typeof ChannelSetting>;

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
  const settings = value as Record<string, unknown>;
  if (Array.isArray(settings.channels)) {
    settings.channels = settings.channels.map((channel: unknown) =>
      withResolvedModule(channel, dirname(path)),
    );
  }
  return settings;
}

export function withResolvedModule(channel: unknown, dir: string): unknown {
  if (channel === null || typeof channel !== 'object') return channel;
  const { module } = channel as { module?: unknown };
  if (typeof module !== 'string' || !isFilePath(module)) return channel;
  return { ...channel, module: pathToFileURL(resolve(dir, module)).href };
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

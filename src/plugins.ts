import type { PluginFamily, PluginSetting } from './config-file.ts';
import { ConfigError } from './errors.ts';

/**
 * Loads a plug-in module (a package, or a `file://` URL from a config file) and returns its
 * default export, a factory; anything else is a ConfigError naming the entry. Each family's
 * factory (channels, sources, validators, handlers) calls it for what is not built in.
 */
export async function loadPlugin<F>(
  family: PluginFamily,
  setting: PluginSetting,
): Promise<{ factory: F; exports: Record<string, unknown> }> {
  const where = `${family}.${setting.name}`;
  const kind = family.slice(0, -1);
  let mod: Record<string, unknown>;
  try {
    mod = (await import(setting.module)) as Record<string, unknown>;
  } catch (err) {
    throw new ConfigError(
      where,
      `cannot load ${kind} module ${setting.module}: ${(err as Error).message}`,
    );
  }
  if (typeof mod.default !== 'function')
    throw new ConfigError(
      where,
      `${kind} module ${setting.module} has no default export (its factory function)`,
    );
  return { factory: mod.default as F, exports: mod };
}

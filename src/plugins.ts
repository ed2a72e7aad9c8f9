import type { PluginFamily, PluginSetting } from './config-file.ts';
import { ConfigError } from './errors.ts';
import type { Logger } from './log.ts';

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

/** What a validator or handler factory is given. */
export interface FunctionPluginContext {
  name: string;
  options: Record<string, unknown>;
  log: Logger;
}

/**
 * The factory of a family whose plug-ins are one function each (validators, handlers): by
 * name, the built-in `builtIns[module]` or the module's default export, called with its
 * context; what it builds must be a function (`shape` says which, in the error).
 */
export async function createFunctionPlugins<F extends (...args: never[]) => unknown>(
  family: 'validators' | 'handlers',
  settings: readonly PluginSetting[],
  builtIns: Readonly<Record<string, (ctx: FunctionPluginContext) => F | Promise<F>>>,
  shape: string,
  log: Logger,
): Promise<Map<string, F>> {
  const kind = family.slice(0, -1);
  const built = new Map<string, F>();
  for (const setting of settings) {
    const ctx = {
      name: setting.name,
      options: setting.options,
      log: log.child({ [kind]: setting.name }),
    };
    const factory =
      builtIns[setting.module] ??
      (await loadPlugin<(ctx: FunctionPluginContext) => F | Promise<F>>(family, setting)).factory;
    const fn = await factory(ctx);
    if (typeof fn !== 'function')
      throw new ConfigError(`${family}.${setting.name}`, `a ${kind} factory must return ${shape}`);
    built.set(setting.name, fn);
  }
  return built;
}

import { type Logger, pino } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/** `json`: one JSON object a line, for collectors (the default); `pretty`: for people in a terminal. */
export type LogFormat = 'json' | 'pretty';

export function createLogger(
  level: string,
  bindings: Record<string, unknown> = {},
  format: LogFormat = 'json',
): Logger {
  const options = { level, base: { ...bindings } };
  if (format === 'json') return pino(options);
  // Synchronous, like pino's own stdout, so a forced exit does not swallow the last lines.
  return pino(
    options,
    pretty({
      sync: true,
      colorize: Boolean(process.stdout.isTTY),
      translateTime: 'SYS:HH:MM:ss.l',
      ignore: 'pid,hostname,node',
      messageFormat: '{if node}{node}: {end}{msg}',
    }),
  );
}

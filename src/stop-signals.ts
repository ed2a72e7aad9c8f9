/**
 * Stop signals as a terminal delivers them. One Ctrl-C on `npx threshold node` or `npm start`
 * arrives twice: the terminal sends SIGINT to its whole foreground process group, and npm
 * forwards its own copy to the child. So the first signal starts the graceful stop, a repeat
 * only says so, and the third forces the exit (a second Ctrl-C through npm, or a third
 * without it).
 */
import { constants } from 'node:os';

export const STOP_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];

/** The signal count that forces the exit instead of waiting for the graceful stop. */
export const FORCE_AT = 3;

export interface StopSignalHandlers {
  /** A signal while the stop is under way, before the one that forces it. */
  repeated(signal: NodeJS.Signals, count: number): void;
  /** The FORCE_AT-th signal: exit now (the callee calls process.exit). */
  forced(signal: NodeJS.Signals): void;
}

/**
 * Installs the handlers for the rest of the process's life (installed before anything starts,
 * so a signal during start-up is counted too) and resolves with the first stop signal.
 */
export function onStopSignals(handlers: StopSignalHandlers): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    let count = 0;
    const handle = (signal: NodeJS.Signals): void => {
      count++;
      if (count === 1) resolve(signal);
      else if (count < FORCE_AT) handlers.repeated(signal, count);
      else handlers.forced(signal);
    };
    for (const signal of STOP_SIGNALS) process.on(signal, handle);
  });
}

/** The shell's convention for "ended by a signal": 128 + its number (130 for SIGINT). */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}

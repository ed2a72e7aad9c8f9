/**
 * One threshold process per data directory. A node that runs its own redis-server stops any
 * redis-server it finds in its data directory, taking it for the orphan of a crash
 * (redis/embedded.ts); without this lock a second node on the same directory would stop the
 * first node's live Redis. The lock file holds the owner's pid; a lock whose owner is gone
 * (SIGKILL, a crash) is taken over, so a restart after a crash still works.
 */
import { linkSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ThresholdError } from './errors.ts';

const LOCK_FILE = 'threshold.lock';
const ATTEMPTS = 5;

export class DataDirInUseError extends ThresholdError {
  constructor(
    readonly dir: string,
    readonly owner: { pid: number; role: string },
  ) {
    super(
      'data_dir_in_use',
      409,
      `data directory ${dir} is in use by another threshold ${owner.role} (pid ${owner.pid}); stop it, or use --data-dir`,
    );
    this.name = 'DataDirInUseError';
  }
}

export interface DataDirLock {
  readonly path: string;
  /** Removes the lock file if it is still ours; also done by itself when the process exits. */
  release(): void;
}

/**
 * Takes the lock of `dir` for this process (`role` names it in the other's refusal: `node`,
 * `cluster`), or throws DataDirInUseError naming the live owner.
 */
export function lockDataDir(dir: string, role: string): DataDirLock {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, LOCK_FILE);
  const content = `${process.pid}\n${role}\n`;
  for (let attempt = 1; ; attempt++) {
    // Written whole, then linked into place: link() fails if the lock exists, like O_EXCL,
    // and nobody ever reads a lock file that has no pid in it yet.
    const draft = `${path}.${process.pid}`;
    writeFileSync(draft, content);
    try {
      linkSync(draft, path);
      break;
    } catch (err) {
      if (!isErrno(err, 'EEXIST') || attempt >= ATTEMPTS) throw err;
    } finally {
      unlinkSync(draft);
    }
    const owner = readOwner(path);
    if (owner && owner.pid !== process.pid && isThresholdProcess(owner.pid)) {
      throw new DataDirInUseError(dir, owner);
    }
    // Stale. Renamed away rather than deleted, so that of two processes taking it over at
    // once only one succeeds (the other gets ENOENT and tries again).
    const stale = `${path}.stale.${process.pid}`;
    try {
      renameSync(path, stale);
      unlinkSync(stale);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
  }

  const release = (): void => {
    process.off('exit', release);
    if (readOwner(path)?.pid !== process.pid) return;
    try {
      unlinkSync(path);
    } catch {
      // Already gone.
    }
  };
  process.on('exit', release);
  return { path, release };
}

/** The live process holding `dir`'s lock, if any (`threshold doctor` leaves its files alone then). */
export function dataDirOwner(dir: string): { pid: number; role: string } | undefined {
  const owner = readOwner(join(dir, LOCK_FILE));
  return owner && isThresholdProcess(owner.pid) ? owner : undefined;
}

function readOwner(path: string): { pid: number; role: string } | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const [pid, role] = text.split('\n');
  const n = Number(pid);
  return Number.isInteger(n) && n > 0 ? { pid: n, role: role || 'node' } : undefined;
}

/**
 * Alive, and (where /proc tells) a threshold process: after a reboot or in a container the
 * dead owner's pid may belong to something else.
 */
function isThresholdProcess(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if (!isErrno(err, 'EPERM')) return false;
  }
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return true;
  }
  // A zombie's command line is empty.
  return cmdline.includes('threshold');
}

function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}

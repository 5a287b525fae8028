import { mkdirSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import * as libc from '../sys/libc';
import { SysError } from '../sys/errors';

/**
 * How often a waiting daemon tries the lock: its takeover pause is at most this longer, and each
 * try wakes an otherwise idle standby (at 20 ms the wakes alone took 1-3 CPU seconds in 12 s
 * under emulation; a 50 ms wait adds at most 30 ms to a pause measured in seconds).
 */
const POLL_MS = 50;

export function daemonLockPath(stateDir: string): string {
  return join(stateDir, 'daemon.lock');
}

/** EWOULDBLOCK (= EAGAIN on Linux): flock's "another process holds it". */
const EWOULDBLOCK = osConstants.errno.EWOULDBLOCK;

function openLockFile(stateDir: string): number {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  return libc.openPath(daemonLockPath(stateDir), libc.O_RDWR | libc.O_CREAT, 0o600);
}

/**
 * The one live device daemon of a state directory holds an exclusive flock on its lock file. The
 * kernel drops it when that process dies however it dies, so the daemon that gets it next knows
 * every device of the directory is free to take over.
 */
export class DaemonLock {
  private constructor(private fd: number | undefined) {}

  /** The lock, or null while another process holds it. */
  static tryAcquire(stateDir: string): DaemonLock | null {
    const fd = openLockFile(stateDir);
    const lock = DaemonLock.tryWith(fd, stateDir);
    if (!lock) libc.closeFd(fd);
    return lock;
  }

  /**
   * Waits until the lock is free and takes it; null when `stop` aborts first. A standby waits here
   * for as long as its daemon serves, so a try is one flock call on a file opened once (reopening
   * it and building an error each try doubled the cost of the wakes themselves).
   */
  static async acquire(stateDir: string, stop: AbortSignal): Promise<DaemonLock | null> {
    const fd = openLockFile(stateDir);
    let lock: DaemonLock | null = null;
    try {
      while (!stop.aborted && (lock = DaemonLock.tryWith(fd, stateDir)) === null)
        await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    } finally {
      if (lock === null) libc.closeFd(fd);
    }
    return lock;
  }

  /** The lock on `fd`, or null while another process holds it; `fd` stays open either way. */
  private static tryWith(fd: number, stateDir: string): DaemonLock | null {
    if (libc.raw.flock(fd, libc.LOCK_EX | libc.LOCK_NB) === 0) return new DaemonLock(fd);
    const errno = libc.errno();
    if (errno === EWOULDBLOCK) return null;
    throw new SysError(`flock ${daemonLockPath(stateDir)}`, errno);
  }

  release(): void {
    if (this.fd === undefined) return;
    libc.closeFd(this.fd);
    this.fd = undefined;
  }
}

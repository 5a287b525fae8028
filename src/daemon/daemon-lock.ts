import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import * as libc from '../sys/libc';
import { SysError, isErrno } from '../sys/errors';

/** How often a waiting daemon tries the lock (its takeover pause is at most this longer). */
const POLL_MS = 20;

export function daemonLockPath(stateDir: string): string {
  return join(stateDir, 'daemon.lock');
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
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const fd = libc.openPath(daemonLockPath(stateDir), libc.O_RDWR | libc.O_CREAT, 0o600);
    if (libc.raw.flock(fd, libc.LOCK_EX | libc.LOCK_NB) === 0) return new DaemonLock(fd);
    const error = new SysError(`flock ${daemonLockPath(stateDir)}`, libc.errno());
    libc.closeFd(fd);
    if (isErrno(error, 'EWOULDBLOCK') || isErrno(error, 'EAGAIN')) return null;
    throw error;
  }

  /** Waits until the lock is free and takes it; null when `stop` aborts first. */
  static async acquire(stateDir: string, stop: AbortSignal): Promise<DaemonLock | null> {
    for (;;) {
      if (stop.aborted) return null;
      const lock = DaemonLock.tryAcquire(stateDir);
      if (lock) return lock;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  release(): void {
    if (this.fd === undefined) return;
    libc.closeFd(this.fd);
    this.fd = undefined;
  }
}

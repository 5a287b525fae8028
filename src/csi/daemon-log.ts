import { copyFile, stat, truncate } from 'node:fs/promises';
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, readSync } from 'node:fs';
import { dirname } from 'node:path';

/** Past this size the log is rotated: at most twice this much of it is kept on the node. */
export const DAEMON_LOG_MAX_BYTES = 32 * 1024 * 1024;

/** A place in the log: an offset, valid while the log has not been rotated since. */
export interface LogPosition {
  offset: number;
  rotations: number;
}

/**
 * The log the device daemons a node plugin starts write (their stdout and stderr, appended, one
 * JSON line each), kept bounded: nothing else rotates it, and a daemon runs for the node's life.
 */
export class DaemonLog {
  private rotations = 0;

  constructor(
    readonly path: string,
    private readonly maxBytes = DAEMON_LOG_MAX_BYTES,
  ) {}

  /** A descriptor for a new daemon's stdout and stderr, and where its lines start. */
  openForDaemon(): { fd: number; start: LogPosition } {
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    const fd = openSync(this.path, 'a', 0o600);
    return { fd, start: { offset: fstatSync(fd).size, rotations: this.rotations } };
  }

  /** What was written from `position` on; all of it when the log was rotated since. */
  since(position: LogPosition): string {
    const fd = openSync(this.path, 'r');
    try {
      const size = fstatSync(fd).size;
      const rotated = position.rotations !== this.rotations || size < position.offset;
      const start = rotated ? 0 : position.offset;
      const text = Buffer.alloc(size - start);
      const read = readSync(fd, text, 0, text.length, start);
      return text.subarray(0, read).toString('utf8');
    } finally {
      closeSync(fd);
    }
  }

  /** The last lines on one line, for an error message. */
  lastLines(count = 5): string {
    try {
      return readFileSync(this.path, 'utf8').trimEnd().split('\n').slice(-count).join(' | ');
    } catch {
      return '(no log)';
    }
  }

  /**
   * Past the limit, the log is copied to `<path>.1` (replacing the one before) and emptied. Copied
   * and truncated, not renamed: the daemons keep their descriptor, opened to append, so their next
   * line lands at the start of the emptied file. A line written between the copy and the truncation
   * is lost; nothing else is.
   */
  async rotateIfFull(): Promise<boolean> {
    const size = await stat(this.path).then(
      (stats) => stats.size,
      () => 0,
    );
    if (size <= this.maxBytes) return false;
    await copyFile(this.path, `${this.path}.1`);
    await truncate(this.path, 0);
    this.rotations++;
    return true;
  }
}

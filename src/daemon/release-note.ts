import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../sys/atomic-file';

/** What a daemon that let go of its devices on purpose left for the one that takes them next. */
export interface ReleaseNote {
  pid: number;
  /** Why it let go: `hand-over`, or the signal that stopped it. */
  reason: string;
  atMs: number;
}

function releaseNotePath(stateDir: string): string {
  return join(stateDir, 'daemon.released');
}

/** Written (whole, by rename) once the devices are let go, while the lock is still held. */
export function writeReleaseNote(stateDir: string, note: ReleaseNote): void {
  writeFileAtomic(releaseNotePath(stateDir), JSON.stringify(note));
}

/**
 * The note of the daemon that held the lock before this one, removed as it is read; null when that
 * daemon died without letting go (killed, crashed), or when there was none.
 */
export function takeReleaseNote(stateDir: string): ReleaseNote | null {
  const path = releaseNotePath(stateDir);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  rmSync(path, { force: true });
  try {
    const note = JSON.parse(text) as Partial<ReleaseNote>;
    if (Number.isSafeInteger(note.pid) && typeof note.reason === 'string' && Number.isFinite(note.atMs))
      return note as ReleaseNote;
  } catch {
    // A torn or foreign file says nothing: as if there were none.
  }
  return null;
}

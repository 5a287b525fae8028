import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** fsyncs a file or directory by path. */
export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Atomic and durable replace: a crash leaves either the old content or the new one, never a torn
 * file, and once this returns the new content survives a power cut.
 */
export function writeFileAtomic(path: string, text: string, mode = 0o600): void {
  const directory = dirname(path);
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  const temporary = `${path}.tmp`;
  writeFileSync(temporary, text, { mode });
  fsyncPath(temporary);
  renameSync(temporary, path);
  fsyncPath(directory);
}

import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { BlkGeometry } from '../virtio/blk/config';

/**
 * What a server needs to take over a live device it did not create: written when the device is
 * created, removed when it is destroyed. Kept under /run: devices do not outlive a reboot either.
 */
export interface DeviceRecord {
  version: 1;
  name: string;
  imagePath: string;
  geometry: BlkGeometry;
}

export const DEFAULT_STATE_DIR = '/run/vduse-csi';

function recordPath(stateDir: string, name: string): string {
  return join(stateDir, 'devices', `${name}.json`);
}

/** Atomic and durable: a crash leaves either the old record or the new one, never a torn file. */
export function writeRecord(stateDir: string, record: DeviceRecord): void {
  const path = recordPath(stateDir, record.name);
  const directory = join(stateDir, 'devices');
  mkdirSync(directory, { recursive: true, mode: 0o700 });
  const temporary = `${path}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  const fd = openSync(temporary, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, path);
  const directoryFd = openSync(directory, 'r');
  try {
    fsyncSync(directoryFd);
  } finally {
    closeSync(directoryFd);
  }
}

export function readRecord(stateDir: string, name: string): DeviceRecord | null {
  let text: string;
  try {
    text = readFileSync(recordPath(stateDir, name), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  const record = JSON.parse(text) as DeviceRecord;
  if (record.version !== 1 || record.name !== name) throw new Error(`unusable device record for ${name}`);
  return record;
}

export function removeRecord(stateDir: string, name: string): void {
  rmSync(recordPath(stateDir, name), { force: true });
}

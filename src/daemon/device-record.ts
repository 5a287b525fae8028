import { readFileSync, rmSync } from 'node:fs';
import { writeFileAtomic } from '../sys/atomic-file';
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

/** A record as any build wrote it: those before keep-allocation have no such field (false). */
type StoredRecord = Omit<DeviceRecord, 'geometry'> & {
  geometry: Omit<BlkGeometry, 'keepAllocation'> & { keepAllocation?: boolean };
};

export const DEFAULT_STATE_DIR = '/run/vduse-csi';

function recordPath(stateDir: string, name: string): string {
  return join(stateDir, 'devices', `${name}.json`);
}

export function writeRecord(stateDir: string, record: DeviceRecord): void {
  writeFileAtomic(recordPath(stateDir, record.name), `${JSON.stringify(record)}\n`);
}

export function readRecord(stateDir: string, name: string): DeviceRecord | null {
  let text: string;
  try {
    text = readFileSync(recordPath(stateDir, name), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  const record = JSON.parse(text) as StoredRecord;
  if (record.version !== 1 || record.name !== name) throw new Error(`unusable device record for ${name}`);
  return {
    ...record,
    geometry: { ...record.geometry, keepAllocation: record.geometry.keepAllocation ?? false },
  };
}

export function removeRecord(stateDir: string, name: string): void {
  rmSync(recordPath(stateDir, name), { force: true });
}

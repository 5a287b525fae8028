import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { writeFileAtomic } from '../sys/atomic-file';
import { join } from 'node:path';
import { BlkGeometry } from '../virtio/blk/config';
import { BackendDescriptor } from '../backend/descriptor';

/**
 * What a server needs to take over a live device it did not create: written when the device is
 * created, removed when it is destroyed. Kept under /run: devices do not outlive a reboot either.
 */
export interface DeviceRecord {
  version: 1;
  name: string;
  backend: BackendDescriptor;
  geometry: BlkGeometry;
  /**
   * Who the device's servers are to the storage's exclusive lock (storage with a lock only): the
   * live one, and while a successor takes over, also the dead ones it may fence.
   */
  lockHolders?: string[];
}

/**
 * A record as any build wrote it. Builds before backends other than files wrote `imagePath` alone,
 * and file records keep it, so an older build can still take over a device a newer one served;
 * those before keep-allocation have no such field (false).
 */
interface StoredRecord {
  version: 1;
  name: string;
  backend?: BackendDescriptor;
  imagePath?: string;
  lockHolders?: string[];
  geometry: Omit<BlkGeometry, 'keepAllocation'> & { keepAllocation?: boolean };
}

export const DEFAULT_STATE_DIR = '/run/vduse-csi';

function recordPath(stateDir: string, name: string): string {
  return join(stateDir, 'devices', `${name}.json`);
}

export function writeRecord(stateDir: string, record: DeviceRecord): void {
  const stored: StoredRecord =
    record.backend.kind === 'file' ? { ...record, imagePath: record.backend.path } : record;
  writeFileAtomic(recordPath(stateDir, record.name), `${JSON.stringify(stored)}\n`);
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
  const backend =
    record.backend ?? (record.imagePath === undefined ? undefined : { kind: 'file', path: record.imagePath });
  if (record.version !== 1 || record.name !== name || !backend)
    throw new Error(`unusable device record for ${name}`);
  return {
    version: 1,
    name,
    backend,
    geometry: { ...record.geometry, keepAllocation: record.geometry.keepAllocation ?? false },
    ...(record.lockHolders === undefined ? {} : { lockHolders: record.lockHolders }),
  };
}

export function removeRecord(stateDir: string, name: string): void {
  rmSync(recordPath(stateDir, name), { force: true });
}

/** The names of the devices recorded in a state directory. */
export function recordedDeviceNames(stateDir: string): string[] {
  try {
    return readdirSync(join(stateDir, 'devices'))
      .filter((entry) => entry.endsWith('.json'))
      .map((entry) => entry.slice(0, -'.json'.length));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

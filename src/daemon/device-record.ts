import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { writeFileAtomic } from '../sys/atomic-file';
import { join } from 'node:path';
import { BlkGeometry } from '../virtio/blk/config';
import { BackendDescriptor, isRbdSharing } from '../backend/descriptor';

/**
 * Version 2 is a record of an RBD image shared with other nodes (`backend.sharing`): builds before
 * sharing refuse it, rather than take the image's exclusive lock for themselves.
 */
export type RecordVersion = 1 | 2;

/** The version a record of `backend` has. */
export function recordVersionOf(backend: BackendDescriptor): RecordVersion {
  return backend.kind === 'rbd' && backend.sharing !== undefined ? 2 : 1;
}

/**
 * What a server needs to take over a live device it did not create: written when the device is
 * created, removed when it is destroyed. Kept under /run: devices do not outlive a reboot either.
 */
export interface DeviceRecord {
  version: RecordVersion;
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
  version: RecordVersion;
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
  if (record.version !== recordVersionOf(record.backend))
    throw new Error(`a record of ${record.name} must be version ${recordVersionOf(record.backend)}`);
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
  if (
    !backend ||
    record.name !== name ||
    record.version !== recordVersionOf(backend) ||
    !knownSharing(backend)
  )
    throw new Error(`unusable device record for ${name}`);
  return {
    version: record.version,
    name,
    backend,
    geometry: { ...record.geometry, keepAllocation: record.geometry.keepAllocation ?? false },
    ...(record.lockHolders === undefined ? {} : { lockHolders: record.lockHolders }),
  };
}

function knownSharing(backend: BackendDescriptor): boolean {
  return backend.kind === 'file' || backend.sharing === undefined || isRbdSharing(backend.sharing);
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

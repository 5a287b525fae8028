import { createHash } from 'node:crypto';

/*
 * Volume and snapshot ids are derived from the CO's name, so a retried create after a crash finds
 * the same id. Ids become file names and VDUSE device names, so anything else is rejected.
 */
const VOLUME_ID = /^vol-[0-9a-f]{32}$/;
const SNAPSHOT_ID = /^snap-[0-9a-f]{32}$/;

function digest(name: string): string {
  return createHash('sha256').update(name, 'utf8').digest('hex').slice(0, 32);
}

export function volumeIdFor(name: string): string {
  return `vol-${digest(name)}`;
}

export function snapshotIdFor(name: string): string {
  return `snap-${digest(name)}`;
}

export function isVolumeId(id: string): boolean {
  return VOLUME_ID.test(id);
}

export function isSnapshotId(id: string): boolean {
  return SNAPSHOT_ID.test(id);
}

import { join } from 'node:path';
import { Claim } from './claim';
import { Pod } from './pod';
import { isVolumeId } from './ids';
import { isRbdDeviceName, isRbdVolumeId, rbdDeviceName } from './rbd/volume-id';
import { VolumeParameters } from './parameters';
import { RecordDirectory } from './record-directory';
import { FilesystemType } from '../node/filesystem';
import { RbdSharing } from '../backend/descriptor';

/** What this node did with a staged volume, so a restarted plugin knows what it runs and mounts. */
export interface StagedVolume {
  volumeId: string;
  /** An image-file volume's image (every record of a build before RBD volumes has it). */
  imagePath?: string;
  /**
   * An RBD volume's image (pool[/namespace]/image), cephx user (files from NodeCephFiles), and how
   * it is shared with other nodes (staged with a multi-node access mode; absent: not at all).
   */
  rbd?: { image: string; user: string; sharing?: RbdSharing };
  parameters: VolumeParameters;
  stagingPath: string;
  accessType: 'mount' | 'block';
  fsType: FilesystemType;
  mountFlags: string[];
  readOnly: boolean;
  devicePath: string;
  /** The claim the volume was provisioned for, when known: where its Events go. */
  claim?: Claim;
  /**
   * Publish target path -> whether it is mounted read-only, published SINGLE_NODE_SINGLE_WRITER,
   * and for which pod (when kubelet said: its Events go there too).
   */
  publications: Record<string, Publication>;
}

export interface Publication {
  readOnly: boolean;
  singleWriter?: boolean;
  pod?: Pod;
}

/** The pods a staged volume is published to, as far as kubelet said. */
export function podsOf(staged: Pick<StagedVolume, 'publications'>): Pod[] {
  return Object.values(staged.publications).flatMap(({ pod }) => (pod ? [pod] : []));
}

/**
 * The name of a volume's device, which also names its records, sockets and logs: an image-file
 * volume's id, or a digest of an RBD volume's id (which holds ':' and may be 128 bytes long).
 */
export function deviceNameOf(volumeId: string): string {
  return isRbdVolumeId(volumeId) ? rbdDeviceName(volumeId) : volumeId;
}

/** `<stateDir>/node/<device name>.json`: one record per volume staged on this node. */
export function stagedVolumes(stateDir: string): RecordDirectory<StagedVolume> {
  return new RecordDirectory(
    join(stateDir, 'node'),
    (key) => isVolumeId(key) || isRbdDeviceName(key),
    (staged) => deviceNameOf(staged.volumeId),
  );
}

import { join } from 'node:path';
import { isVolumeId } from './ids';
import { VolumeParameters } from './parameters';
import { RecordDirectory } from './record-directory';
import { FilesystemType } from '../node/filesystem';

/** What this node did with a staged volume, so a restarted plugin knows what it runs and mounts. */
export interface StagedVolume {
  volumeId: string;
  imagePath: string;
  parameters: VolumeParameters;
  stagingPath: string;
  accessType: 'mount' | 'block';
  fsType: FilesystemType;
  mountFlags: string[];
  readOnly: boolean;
  devicePath: string;
  /** Publish target path -> whether it is mounted read-only, and published SINGLE_NODE_SINGLE_WRITER. */
  publications: Record<string, { readOnly: boolean; singleWriter?: boolean }>;
}

/** `<stateDir>/node/<volumeId>.json`: one record per volume staged on this node. */
export function stagedVolumes(stateDir: string): RecordDirectory<StagedVolume> {
  return new RecordDirectory(join(stateDir, 'node'), isVolumeId, (staged) => staged.volumeId);
}

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CsiHarness, MiB, mountCapability } from './csi-harness';

/** Creates a 16 MiB ext4 volume and returns the NodeStageVolume request for it (a fresh staging directory). */
export async function createVolumeToStage(
  csi: CsiHarness,
  name: string,
): Promise<{ volumeId: string; request: object }> {
  const { volume } = await csi.call('controller', 'CreateVolume', {
    name,
    capacity_range: { required_bytes: 16 * MiB },
    volume_capabilities: [mountCapability()],
  });
  const staging = join(csi.root, `staging-${name}`);
  mkdirSync(staging);
  return {
    volumeId: volume.volume_id as string,
    request: {
      volume_id: volume.volume_id,
      staging_target_path: staging,
      volume_capability: mountCapability(),
    },
  };
}

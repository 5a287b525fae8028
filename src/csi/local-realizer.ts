import { copyImage } from '../storage/image-copy';
import { ImageDirectory } from '../storage/images';
import { CsiError, failedPrecondition, resourceExhausted } from './errors';
import { VolumeCondition } from './messages';
import { VolumeRealizer } from './realizer';
import { SnapshotRecord, VolumeRecord } from './store';
import { VolumeServers } from './volume-servers';

/**
 * The image work on this host's ImageDirectory: the controller of a single-host plugin uses it
 * directly, the node agent of a cluster on behalf of the controller. Images are created and copied
 * atomically, so an image that exists is complete.
 */
export class LocalRealizer implements VolumeRealizer {
  constructor(
    private readonly images: ImageDirectory,
    private readonly servers: VolumeServers,
  ) {}

  async createVolume(record: VolumeRecord): Promise<void> {
    if (this.images.exists('volumes', record.id)) return;
    await withSpaceErrors(async () => {
      try {
        await this.makeImage(record);
      } catch (error) {
        this.images.remove('volumes', record.id);
        throw error;
      }
    });
  }

  async growVolume(record: VolumeRecord): Promise<void> {
    await withSpaceErrors(async () => {
      this.images.grow('volumes', record.id, record.capacityBytes);
      if (isThick(record)) await this.images.reserve('volumes', record.id);
    });
    // A live device learns its new size now; a filesystem on it still needs NodeExpandVolume.
    const served = await this.servers.status(record.id);
    if (served && served.capacityBytes < record.capacityBytes)
      await this.servers.resize(record.id, record.capacityBytes);
  }

  /** Images are made within CreateVolume here: never left unstarted. */
  withdrawUnstarted(): Promise<boolean> {
    return Promise.resolve(false);
  }

  async deleteVolume(id: string): Promise<void> {
    if (await this.servers.status(id))
      throw failedPrecondition(`volume ${id} is staged on a node: unstage it first`);
    // exists() first: an unusable data directory holds no image, and removing it must not fail.
    if (this.images.exists('volumes', id)) this.images.remove('volumes', id);
  }

  async createSnapshot(record: SnapshotRecord): Promise<SnapshotRecord> {
    if (!this.images.exists('snapshots', record.id)) {
      this.images.ensureDirectory('snapshots');
      await withSpaceErrors(() =>
        this.copyVolume(record.sourceVolumeId, this.images.path('snapshots', record.id)),
      );
    }
    return { ...record, sizeBytes: this.images.size('snapshots', record.id) ?? record.sizeBytes };
  }

  async deleteSnapshot(id: string): Promise<void> {
    if (this.images.exists('snapshots', id)) this.images.remove('snapshots', id);
  }

  async volumeConditions(records: VolumeRecord[]): Promise<VolumeCondition[]> {
    return records.map((record) => {
      const size = this.images.size('volumes', record.id);
      if (size === null) return { abnormal: true, message: `image of ${record.id} is missing` };
      if (size < record.capacityBytes)
        return { abnormal: true, message: `image is ${size} bytes, expected ${record.capacityBytes}` };
      return { abnormal: false, message: 'image present' };
    });
  }

  private async makeImage(record: VolumeRecord): Promise<void> {
    const { id, capacityBytes, source } = record;
    if (!source) {
      await this.images.createEmpty('volumes', id, capacityBytes, isThick(record));
      return;
    }
    this.images.ensureDirectory('volumes');
    const target = this.images.path('volumes', id);
    if (source.kind === 'snapshot')
      await copyImage(this.images.path('snapshots', source.id), target, { sizeBytes: capacityBytes });
    else await this.copyVolume(source.id, target);
    this.images.grow('volumes', id, capacityBytes);
    // After the copy, in place: a crash before it ends leaves a copy not (fully) reserved.
    if (isThick(record)) await this.images.reserve('volumes', id);
  }

  /** A point-in-time copy: a live server pauses its queues for it, an idle image is copied as is. */
  private async copyVolume(volumeId: string, target: string): Promise<void> {
    if (await this.servers.copyWhilePaused(volumeId, target)) return;
    await copyImage(this.images.path('volumes', volumeId), target);
  }
}

function isThick(record: VolumeRecord): boolean {
  return record.parameters.provisioning === 'thick';
}

const NO_SPACE = new Set(['ENOSPC', 'EDQUOT']);

/** A full data directory is RESOURCE_EXHAUSTED, which the CO may retry elsewhere or later. */
async function withSpaceErrors<T>(work: () => Promise<T> | T): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (!(error instanceof CsiError) && NO_SPACE.has((error as NodeJS.ErrnoException).code ?? ''))
      throw resourceExhausted(error instanceof Error ? error.message : String(error));
    throw error;
  }
}

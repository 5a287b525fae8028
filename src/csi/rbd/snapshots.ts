import { RadosClient, RadosPool } from '../../backend/rados-client';
import { removeRbdImageChain } from '../../backend/rbd-chain';
import { RbdHandle, listRbdImages } from '../../backend/rbd-handle';
import { RBD_FEATURES_DEFAULT } from '../../backend/librbd';
import { log } from '../../log';
import { alreadyExists, notFound } from '../errors';
import { Snapshot } from '../messages';
import { SNAPSHOT_NAME, cloneInPool } from './clones';
import { findImage, madeFrom, readOrigin, writeOrigin } from './origin';
import { RbdVolumeId, isRbdSnapshotImageName, rbdSnapshotIdText, rbdSnapshotImageNameFor } from './volume-id';
import { CephError } from '../../backend/ceph-error';

/*
 * An RBD snapshot is an image of its own, `csi-snap-<digest of the CO name>` in its volume's pool:
 * a clone of a temporary snapshot of the volume, holding one snapshot (SNAPSHOT_NAME) that volumes
 * are cloned from. So the volume can be deleted while the snapshot lives on, and the snapshot
 * while volumes made from it live on (clone v2 keeps what they read in the trash).
 */

/** The snapshot of `volume` that the CO calls `name`, made unless it exists; ALREADY_EXISTS when that name is another volume's. */
export async function createRbdSnapshot(
  client: RadosClient,
  pool: RadosPool,
  volume: RbdVolumeId,
  volumeId: string,
  name: string,
): Promise<Snapshot> {
  const image = rbdSnapshotImageNameFor(name);
  const source = { id: volumeId, image: volume.location.image };
  const found = await findImage(pool, image);
  if (found !== undefined && !madeFrom(found, source))
    throw alreadyExists(
      `snapshot ${name} exists with another source volume (${found.origin?.source ?? 'unknown'})`,
    );
  // The temporary snapshot of the volume is named after the snapshot's image: a retry finds it.
  if (found === undefined) {
    const taken = await RbdHandle.with(pool, volume.location.image, async (handle) => {
      if (!handle.hasSnapshot(image)) await handle.createSnapshot(image);
      return true;
    });
    if (!taken) throw notFound(`source volume ${volumeId} does not exist`);
  }
  try {
    if (found === undefined)
      await cloneInPool(
        pool,
        volume.location.image,
        image,
        image,
        RBD_FEATURES_DEFAULT,
        `volume ${volumeId}`,
      );
    await RbdHandle.with(pool, image, async (handle) => {
      if ((await readOrigin(handle, image)) === undefined)
        await writeOrigin(handle, image, { source: volumeId });
      if (!handle.hasSnapshot(SNAPSHOT_NAME)) await handle.createSnapshot(SNAPSHOT_NAME);
    });
    await RbdHandle.with(pool, volume.location.image, (handle) => handle.removeSnapshot(image));
  } catch (error) {
    if (found === undefined) await undoSnapshot(client, pool, volume.location.image, image);
    throw error;
  }
  const snapshot = await describeRbdSnapshot(pool, { ...volume, location: { ...volume.location, image } });
  if (snapshot === undefined) throw new CephError(`open the image of snapshot ${name}`, 2);
  log.info('RBD snapshot ready', { snapshot: snapshot.snapshot_id, name, volume: volumeId });
  return snapshot;
}

async function undoSnapshot(
  client: RadosClient,
  pool: RadosPool,
  volumeImage: string,
  image: string,
): Promise<void> {
  try {
    await removeRbdImageChain(client, pool, image);
    await RbdHandle.with(pool, volumeImage, (handle) => handle.removeSnapshot(image));
  } catch (error) {
    log.warn('removing a failed RBD snapshot failed', {
      image: `${pool.name}/${image}`,
      error: String(error),
    });
  }
}

/** Removes a snapshot's image (gone already: nothing to do); volumes made from it keep reading it from the trash. */
export async function deleteRbdSnapshot(client: RadosClient, pool: RadosPool, image: string): Promise<void> {
  const exists = await RbdHandle.with(pool, image, async (handle) => {
    await handle.removeSnapshot(SNAPSHOT_NAME);
    return true;
  });
  if (exists) await removeRbdImageChain(client, pool, image);
}

/** A snapshot as CSI describes it; undefined when its image or its snapshot (still being made) is missing. */
export function describeRbdSnapshot(pool: RadosPool, snapshot: RbdVolumeId): Promise<Snapshot | undefined> {
  return RbdHandle.with(pool, snapshot.location.image, async (handle) => {
    const origin = await readOrigin(handle, snapshot.location.image);
    if (origin === undefined || !handle.hasSnapshot(SNAPSHOT_NAME)) return undefined;
    const time = handle.snapshotTime(SNAPSHOT_NAME).getTime();
    return {
      snapshot_id: rbdSnapshotIdText(snapshot),
      source_volume_id: origin.source,
      size_bytes: handle.size(),
      creation_time: { seconds: Math.floor(time / 1000), nanos: (time % 1000) * 1_000_000 },
      ready_to_use: true,
      group_snapshot_id: '',
    };
  });
}

/** The snapshots of `volumeId`: every snapshot image of its pool whose origin names it. */
export async function listRbdSnapshotsOf(
  pool: RadosPool,
  volume: RbdVolumeId,
  volumeId: string,
): Promise<Snapshot[]> {
  const snapshots: Snapshot[] = [];
  for (const image of (await listRbdImages(pool)).sort()) {
    if (!isRbdSnapshotImageName(image)) continue;
    const described = await describeRbdSnapshot(pool, { ...volume, location: { ...volume.location, image } });
    if (described?.source_volume_id === volumeId) snapshots.push(described);
  }
  return snapshots;
}

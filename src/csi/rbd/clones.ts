import { CephError } from '../../backend/ceph-error';
import { RadosClient, RadosPool } from '../../backend/rados-client';
import { cloneDepth, releaseTrashedAncestors, removeRbdImageChain } from '../../backend/rbd-chain';
import { RbdHandle, cloneRbdImage } from '../../backend/rbd-handle';
import { log } from '../../log';
import { failedPrecondition, invalidArgument, notFound, outOfRange } from '../errors';
import { CapacityRange, VolumeContentSource } from '../messages';
import { CapacityLimits, chooseCapacity, requireField } from '../validate';
import { isSnapshotId, isVolumeId } from '../ids';
import { Origin, readOrigin, writeOrigin } from './origin';
import {
  RbdVolumeId,
  isRbdSnapshotId,
  isRbdVolumeId,
  parseRbdSnapshotId,
  parseRbdVolumeId,
  sameCluster,
} from './volume-id';

/** The one snapshot of a snapshot's image, which clones are made from. */
export const SNAPSHOT_NAME = 'csi-snap';

/** A new RBD volume's content source: an image in the new volume's pool and its snapshot. */
export interface CloneSource {
  kind: 'snapshot' | 'volume';
  /** The CSI id of the source. */
  id: string;
  image: string;
  /**
   * The snapshot the clone reads from: a snapshot's own, or for a volume a temporary one named
   * after the clone (so a retry finds it), removed once the clone is made.
   */
  snapshot: string;
}

/**
 * The source of a volume about to be `target`, from the request alone: NOT_FOUND for an id no RBD
 * snapshot or volume can have, INVALID_ARGUMENT for one of image files or of another cluster, pool
 * or namespace (clones stay in their source's pool).
 */
export function cloneSourceOf(source: VolumeContentSource, target: RbdVolumeId): CloneSource {
  const isSnapshot = source.type === 'snapshot';
  const id = isSnapshot
    ? requireField(source.snapshot?.snapshot_id, 'volume_content_source.snapshot.snapshot_id')
    : requireField(source.volume?.volume_id, 'volume_content_source.volume.volume_id');
  const what = isSnapshot ? 'snapshot' : 'volume';
  const isRbd = isSnapshot ? isRbdSnapshotId(id) : isRbdVolumeId(id);
  if (!isRbd && (isSnapshot ? isSnapshotId(id) : isVolumeId(id)))
    throw invalidArgument(`an RBD volume cannot be made from image-file ${what} ${id}`);
  let parsed: RbdVolumeId;
  try {
    parsed = isSnapshot ? parseRbdSnapshotId(id) : parseRbdVolumeId(id);
  } catch (error) {
    throw notFound(`source ${what} ${JSON.stringify(id)} does not exist: ${(error as Error).message}`);
  }
  const samePlace =
    sameCluster(parsed.cluster, target.cluster) &&
    parsed.location.pool === target.location.pool &&
    parsed.location.namespace === target.location.namespace;
  if (!samePlace)
    throw invalidArgument(
      `source ${what} ${id} is in another cluster, pool or namespace than the class's: a clone is made in its source's pool`,
    );
  return {
    kind: what,
    id,
    image: parsed.location.image,
    snapshot: isSnapshot ? SNAPSHOT_NAME : target.location.image,
  };
}

/** How a clone is made: the class's features and depth limit, and the request's size. */
export interface CloneSettings {
  features: bigint;
  maxDepth: number;
  range: CapacityRange | null | undefined;
  limits: Omit<CapacityLimits, 'defaultBytes'>;
}

/**
 * Makes `image` a clone of `source`, or finishes one a call before left (`found`: its origin),
 * and answers its size: grown to the request (never smaller than the source: OUT_OF_RANGE) and
 * flattened when deeper than the class allows. A clone this call made is removed again if a later
 * step fails; a volume source's temporary snapshot never outlives the call that succeeds.
 */
export async function makeClone(
  client: RadosClient,
  pool: RadosPool,
  image: string,
  source: CloneSource,
  settings: CloneSettings,
  found: { origin: Origin | undefined } | undefined,
): Promise<number> {
  const bytes = found?.origin?.bytes ?? (await cloneBytes(pool, source, settings));
  if (found === undefined) {
    try {
      await cloneFromSource(pool, image, source, settings.features);
    } catch (error) {
      await removeTemporarySnapshot(pool, source);
      throw error;
    }
  }
  try {
    const made = await RbdHandle.with(pool, image, async (clone) => {
      if ((await readOrigin(clone, image)) === undefined)
        await writeOrigin(clone, image, { source: source.id, bytes });
      await clone.grow(bytes);
      const depth = await cloneDepth(client, clone);
      if (depth > settings.maxDepth) {
        const parent = clone.parent();
        log.info('flattening an RBD clone deeper than its class allows', {
          image: clone.name,
          depth,
          maxCloneDepth: settings.maxDepth,
        });
        await clone.flatten();
        await releaseTrashedAncestors(client, parent);
      }
      return clone.size();
    });
    if (made === undefined) throw new CephError(`open the clone ${pool.name}/${image}`, 2);
    await removeTemporarySnapshot(pool, source);
    return made;
  } catch (error) {
    if (found === undefined) await undo(client, pool, image, source);
    throw error;
  }
}

/** The size the clone gets; NOT_FOUND when the source (or a snapshot's own snapshot) is gone. */
async function cloneBytes(pool: RadosPool, source: CloneSource, settings: CloneSettings): Promise<number> {
  const sourceBytes = await RbdHandle.with(pool, source.image, (handle) =>
    Promise.resolve(
      source.kind === 'volume' || handle.hasSnapshot(source.snapshot) ? handle.size() : undefined,
    ),
  );
  if (sourceBytes === undefined) throw notFound(`source ${source.kind} ${source.id} does not exist`);
  const required = settings.range?.required_bytes ?? 0;
  const limit = settings.range?.limit_bytes ?? 0;
  if ((required > 0 && required < sourceBytes) || (limit > 0 && limit < sourceBytes))
    throw outOfRange(
      `source ${source.kind} ${source.id} is ${sourceBytes} bytes, more than the capacity range [${required}, ${limit}] allows`,
    );
  return chooseCapacity(settings.range, {
    ...settings.limits,
    defaultBytes: sourceBytes,
    minimumBytes: Math.max(settings.limits.minimumBytes, sourceBytes),
  });
}

async function cloneFromSource(
  pool: RadosPool,
  image: string,
  source: CloneSource,
  features: bigint,
): Promise<void> {
  if (source.kind === 'volume') {
    const taken = await RbdHandle.with(pool, source.image, async (handle) => {
      if (!handle.hasSnapshot(source.snapshot)) await handle.createSnapshot(source.snapshot);
      return true;
    });
    if (!taken) throw notFound(`source volume ${source.id} does not exist`);
  }
  await cloneInPool(
    pool,
    source.image,
    source.snapshot,
    image,
    features,
    `source ${source.kind} ${source.id}`,
  );
}

/** Clones within a pool; a parent without the layering feature is FAILED_PRECONDITION naming `what`. */
export async function cloneInPool(
  pool: RadosPool,
  parent: string,
  snapshot: string,
  child: string,
  features: bigint,
  what: string,
): Promise<void> {
  try {
    await cloneRbdImage(pool, parent, snapshot, pool, child, features);
  } catch (error) {
    if (error instanceof CephError && error.code === 'ENOSYS')
      throw failedPrecondition(`${what} cannot be cloned: its image lacks the layering feature`);
    throw error;
  }
}

/** Removes a volume source's temporary snapshot (clones made from it keep it in the trash). */
async function removeTemporarySnapshot(pool: RadosPool, source: CloneSource): Promise<void> {
  if (source.kind !== 'volume') return;
  await RbdHandle.with(pool, source.image, (handle) => handle.removeSnapshot(source.snapshot));
}

/** What a failed clone leaves is removed; what cannot be is logged (a retry finds it). */
async function undo(client: RadosClient, pool: RadosPool, image: string, source: CloneSource): Promise<void> {
  try {
    await removeRbdImageChain(client, pool, image);
    await removeTemporarySnapshot(pool, source);
  } catch (error) {
    log.warn('removing a failed RBD clone failed', { image: `${pool.name}/${image}`, error: String(error) });
  }
}

import { RbdHandle } from '../../backend/rbd-handle';
import { RadosPool } from '../../backend/rados-client';

/**
 * What an image was made from, in its metadata (`rbd image-meta get IMAGE csi.vduse.dev/origin`):
 * the id of a clone's content source and the size it was asked for, or the volume a snapshot's
 * image was taken of. A retried call compares it with its request: a clone may since have been
 * flattened, so its parent no longer tells. Plain volumes have none. A clone starts with a copy of
 * its parent's metadata, so the value names the image it belongs to, and a copy counts as none.
 */
export interface Origin {
  source: string;
  bytes?: number;
}

const ORIGIN_KEY = 'csi.vduse.dev/origin';

export async function readOrigin(handle: RbdHandle, image: string): Promise<Origin | undefined> {
  const text = await handle.metadata(ORIGIN_KEY);
  if (text === undefined) return undefined;
  const parsed = JSON.parse(text) as Partial<Origin> & { image?: string };
  if (parsed.image !== image) return undefined;
  if (typeof parsed.source !== 'string')
    throw new Error(`RBD image ${handle.name} has a malformed ${ORIGIN_KEY}`);
  return parsed.bytes === undefined
    ? { source: parsed.source }
    : { source: parsed.source, bytes: parsed.bytes };
}

export function writeOrigin(handle: RbdHandle, image: string, origin: Origin): Promise<void> {
  return handle.setMetadata(ORIGIN_KEY, JSON.stringify({ image, ...origin }));
}

/** What a retried call finds of an image it may have made. */
export interface Found {
  bytes: number;
  origin: Origin | undefined;
  /** The image its parent snapshot belongs to, when it is a clone in `pool`. */
  parentImage: string | undefined;
}

export function findImage(pool: RadosPool, image: string): Promise<Found | undefined> {
  return RbdHandle.with(pool, image, async (handle) => {
    const parent = handle.parent();
    const samePool = parent !== undefined && poolName(parent.pool, parent.namespace) === pool.name;
    return {
      bytes: handle.size(),
      origin: await readOrigin(handle, image),
      parentImage: samePool ? parent.imageName : undefined,
    };
  });
}

/**
 * Whether a found image was made from `source` (undefined: from nothing). One without an origin
 * made from a source is a clone whose maker stopped before it wrote the origin: its parent tells.
 */
export function madeFrom(found: Found, source: { id: string; image: string } | undefined): boolean {
  if (found.origin !== undefined) return found.origin.source === source?.id;
  return source === undefined ? found.parentImage === undefined : found.parentImage === source.image;
}

/** How RadosPool names a pool and namespace. */
function poolName(pool: string, namespace: string): string {
  return namespace === '' ? pool : `${pool}/${namespace}`;
}

import { CephError } from './ceph-error';
import { RadosClient, RadosPool } from './rados-client';
import { RbdHandle, RbdParent, removeTrashedRbdImage, trashRbdImage } from './rbd-handle';
import { removeRbdImage } from './rbd-image';

/*
 * Chains of clones (clone v2). A clone reads what it never wrote from its parent's snapshot; an
 * image that clones still read from cannot be removed, so it goes to the trash instead and is
 * removed from there by whoever removes (or flattens) its last clone.
 */

/** Parents followed at most: far past any depth a class allows, it only bounds a broken chain. */
const MAX_WALK = 128;

/** How many ancestors an image reads through (0: none). */
export async function cloneDepth(client: RadosClient, image: RbdHandle): Promise<number> {
  let depth = 0;
  let parent = image.parent();
  while (parent !== undefined && depth < MAX_WALK) {
    depth++;
    parent = await withParent(client, parent, (handle) => handle.parent());
  }
  return depth;
}

/**
 * Removes an image. One that clones still read from goes to the trash (ENOTEMPTY: it has
 * snapshots they link to). Either way, ancestors in the trash that nothing reads from any more
 * are removed too. A missing image is not an error; one still open elsewhere is (busy).
 */
export async function removeRbdImageChain(
  client: RadosClient,
  pool: RadosPool,
  image: string,
): Promise<void> {
  const found = await RbdHandle.with(pool, image, async (handle) => ({
    id: handle.id(),
    parent: handle.parent(),
  }));
  if (found === undefined) return;
  try {
    await removeRbdImage(pool, image);
  } catch (error) {
    if (error instanceof CephError && error.kind === 'not-found') return;
    if (!(error instanceof CephError && error.code === 'ENOTEMPTY')) throw error;
    await trashRbdImage(pool, image);
    // Its last clone may have gone between the two calls, finding it not yet in the trash.
    if (!(await removeTrashedRbdImage(pool, found.id))) return;
  }
  await releaseTrashedAncestors(client, found.parent);
}

/**
 * After an image stopped reading from `parent` (removed or flattened): removes that parent from
 * the trash when it is there and nothing else reads from it, and so on up the chain.
 */
export async function releaseTrashedAncestors(
  client: RadosClient,
  parent: RbdParent | undefined,
): Promise<void> {
  let next = parent;
  for (let steps = 0; next !== undefined && steps < MAX_WALK; steps++) {
    const current = next;
    const grandparent = await withParent(client, current, async (handle) => handle.parent());
    const removed = await withPool(client, current, (pool) => removeTrashedRbdImage(pool, current.imageId));
    if (!removed) return;
    next = grandparent;
  }
}

async function withPool<T>(
  client: RadosClient,
  parent: RbdParent,
  action: (pool: RadosPool) => Promise<T>,
): Promise<T> {
  const pool = await client.openPool(parent.pool, parent.namespace === '' ? undefined : parent.namespace);
  try {
    return await action(pool);
  } finally {
    pool.close();
  }
}

/** Runs `action` on the parent image (by id: it may be in the trash); undefined when it is gone. */
function withParent<T>(
  client: RadosClient,
  parent: RbdParent,
  action: (handle: RbdHandle) => T | Promise<T>,
): Promise<T | undefined> {
  return withPool(client, parent, async (pool) => {
    const handle = await RbdHandle.openById(pool, parent.imageId);
    if (handle === undefined) return undefined;
    try {
      return await action(handle);
    } finally {
      await handle.close();
    }
  });
}

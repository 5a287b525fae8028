import koffi from 'koffi';
import { CephError, checkCeph } from './ceph-error';
import {
  ImageSpec,
  LinkedImageSpec,
  Pointer,
  RBD_IMAGE_OPTION_CLONE_FORMAT,
  RBD_IMAGE_OPTION_FEATURES,
  SnapSpec,
  Timespec,
  callOffThread,
  ceph,
} from './librbd';
import { RadosPool } from './rados-client';

/** The image a clone reads through to: where it is (even in the trash) and at which snapshot. */
export interface RbdParent {
  pool: string;
  /** '' for the pool's default namespace. */
  namespace: string;
  imageId: string;
  imageName: string;
  /** The image was moved to the trash (it stays there until its last clone is gone). */
  inTrash: boolean;
  snapshot: string;
}

/** Metadata values read back; librbd's own are far shorter. */
const METADATA_BYTES = 4096;
const IMAGE_ID_BYTES = 64;
/** rbd_list2 asks again with the count it needs when this is too few. */
const LIST_START = 64;

/**
 * The image's handle, or undefined when there is no such image. A read-only handle never takes the
 * exclusive lock, so it reads beside the image's writer and other readers.
 */
export async function openRbdHandle(
  pool: RadosPool,
  image: string,
  mode: { readOnly: boolean } = { readOnly: false },
): Promise<Pointer | undefined> {
  const lib = ceph();
  return openBy(
    mode.readOnly ? lib.rbdOpenReadOnly : lib.rbdOpen,
    pool,
    image,
    `open RBD image ${pool.name}/${image}${mode.readOnly ? ' read-only' : ''}`,
  );
}

async function openBy(
  open: ReturnType<typeof ceph>['rbdOpen'],
  pool: RadosPool,
  key: string,
  operation: string,
): Promise<Pointer | undefined> {
  const out: [Pointer | null] = [null];
  const result = await callOffThread(open, pool.handle, key, out, null);
  if (result === -2) return undefined;
  if (result < 0) throw new CephError(operation, -result);
  return out[0]!;
}

/**
 * An image opened for the controller's layering work (snapshots, clones, parents, metadata), on a
 * pool the caller keeps open. It never takes the exclusive lock itself: librbd asks the holder (a
 * node serving the image) to run snapshot operations.
 */
export class RbdHandle {
  private closed = false;

  private constructor(
    readonly pool: RadosPool,
    /** For messages: pool[/namespace]/image, or the id of an image in the trash. */
    readonly name: string,
    private readonly handle: Pointer,
  ) {}

  static async open(pool: RadosPool, image: string): Promise<RbdHandle | undefined> {
    const handle = await openRbdHandle(pool, image);
    return handle === undefined ? undefined : new RbdHandle(pool, `${pool.name}/${image}`, handle);
  }

  /** Opens an image by its id, which also finds it in the trash. */
  static async openById(pool: RadosPool, id: string): Promise<RbdHandle | undefined> {
    const name = `${pool.name} image id ${id}`;
    const handle = await openBy(ceph().rbdOpenById, pool, id, `open RBD ${name}`);
    return handle === undefined ? undefined : new RbdHandle(pool, name, handle);
  }

  /** Opens `image`, runs `action` and closes it; undefined when there is no such image. */
  static async with<T>(
    pool: RadosPool,
    image: string,
    action: (handle: RbdHandle) => Promise<T>,
  ): Promise<T | undefined> {
    const handle = await RbdHandle.open(pool, image);
    if (handle === undefined) return undefined;
    try {
      return await action(handle);
    } finally {
      await handle.close();
    }
  }

  size(): number {
    const size: [number] = [0];
    checkCeph(ceph().rbdGetSize(this.handle, size), `get the size of RBD image ${this.name}`);
    return Number(size[0]);
  }

  /** Grows the image (never shrinks it). */
  async grow(bytes: number): Promise<void> {
    if (bytes <= this.size()) return;
    const result = await callOffThread(ceph().rbdResize2, this.handle, bytes, false, null, null);
    if (result < 0) throw new CephError(`resize RBD image ${this.name} to ${bytes} bytes`, -result);
  }

  id(): string {
    const buffer = Buffer.alloc(IMAGE_ID_BYTES);
    checkCeph(ceph().rbdGetId(this.handle, buffer, buffer.length), `get the id of RBD image ${this.name}`);
    return buffer.toString('utf8', 0, buffer.indexOf(0));
  }

  /** The parent of a clone; undefined for an image that is not one (or no longer: flattened). */
  parent(): RbdParent | undefined {
    const lib = ceph();
    const image = koffi.alloc(LinkedImageSpec, 1) as Pointer;
    const snap = koffi.alloc(SnapSpec, 1) as Pointer;
    try {
      const result = lib.rbdGetParent(this.handle, image, snap);
      if (result === -2) return undefined;
      checkCeph(result, `get the parent of RBD image ${this.name}`);
      const spec = koffi.decode(image, LinkedImageSpec) as Record<string, unknown>;
      const snapshot = koffi.decode(snap, SnapSpec) as Record<string, unknown>;
      lib.rbdLinkedImageSpecCleanup(image);
      lib.rbdSnapSpecCleanup(snap);
      return {
        pool: String(spec.pool_name),
        namespace: String(spec.pool_namespace ?? ''),
        imageId: String(spec.image_id),
        imageName: String(spec.image_name),
        inTrash: Boolean(spec.trash),
        snapshot: String(snapshot.name),
      };
    } finally {
      koffi.free(image);
      koffi.free(snap);
    }
  }

  hasSnapshot(name: string): boolean {
    const exists: [boolean] = [false];
    checkCeph(
      ceph().rbdSnapExists(this.handle, name, exists),
      `look for snapshot ${name} of RBD image ${this.name}`,
    );
    return exists[0];
  }

  async createSnapshot(name: string): Promise<void> {
    const result = await callOffThread(ceph().rbdSnapCreate, this.handle, name);
    if (result < 0) throw new CephError(`create snapshot ${name} of RBD image ${this.name}`, -result);
  }

  /**
   * Removes a snapshot (none: nothing to do). One that clones still read from goes to the image's
   * trash namespace (clone v2), and librbd removes it when its last clone is gone.
   */
  async removeSnapshot(name: string): Promise<void> {
    if (!this.hasSnapshot(name)) return;
    const result = await callOffThread(ceph().rbdSnapRemove, this.handle, name);
    if (result < 0 && result !== -2)
      throw new CephError(`remove snapshot ${name} of RBD image ${this.name}`, -result);
  }

  /** When a snapshot was taken. */
  snapshotTime(name: string): Date {
    const lib = ceph();
    const id: [bigint] = [0n];
    checkCeph(lib.rbdSnapGetId(this.handle, name, id), `get the id of snapshot ${name} of ${this.name}`);
    const time = Buffer.alloc(koffi.sizeof(Timespec));
    checkCeph(
      lib.rbdSnapGetTimestamp(this.handle, id[0], time),
      `get the time of snapshot ${name} of RBD image ${this.name}`,
    );
    const { tv_sec: seconds, tv_nsec: nanos } = koffi.decode(time, Timespec) as Record<string, number>;
    return new Date(Number(seconds) * 1000 + Math.floor(Number(nanos) / 1_000_000));
  }

  /** An image metadata value (rbd image-meta); undefined when the key is not set. */
  async metadata(key: string): Promise<string | undefined> {
    const buffer = koffi.alloc('char', METADATA_BYTES) as Pointer;
    try {
      const length: [number] = [METADATA_BYTES];
      const result = await callOffThread(ceph().rbdMetadataGet, this.handle, key, buffer, length);
      if (result === -2) return undefined;
      checkCeph(result, `read metadata ${key} of RBD image ${this.name}`);
      return koffi.decode(buffer, 'char', -1) as string;
    } finally {
      koffi.free(buffer);
    }
  }

  async setMetadata(key: string, value: string): Promise<void> {
    const result = await callOffThread(ceph().rbdMetadataSet, this.handle, key, value);
    if (result < 0) throw new CephError(`write metadata ${key} of RBD image ${this.name}`, -result);
  }

  /** Copies what the image reads from its parents into it, which detaches it from them. */
  async flatten(): Promise<void> {
    const result = await callOffThread(ceph().rbdFlatten, this.handle);
    if (result < 0) throw new CephError(`flatten RBD image ${this.name}`, -result);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const result = await callOffThread(ceph().rbdClose, this.handle);
    if (result < 0) throw new CephError(`close RBD image ${this.name}`, -result);
  }
}

/**
 * Clones `parent@snapshot` into `child` (clone v2: the snapshot needs no protection, and may be
 * removed while clones read from it). Both are in pools of one cluster connection.
 */
export async function cloneRbdImage(
  parentPool: RadosPool,
  parent: string,
  snapshot: string,
  childPool: RadosPool,
  child: string,
  features: bigint,
): Promise<void> {
  const lib = ceph();
  const options: [Pointer | null] = [null];
  lib.rbdImageOptionsCreate(options);
  try {
    const operation = `clone RBD image ${parentPool.name}/${parent}@${snapshot} to ${childPool.name}/${child}`;
    checkCeph(lib.rbdImageOptionsSetUint64(options[0], RBD_IMAGE_OPTION_FEATURES, features), operation);
    checkCeph(lib.rbdImageOptionsSetUint64(options[0], RBD_IMAGE_OPTION_CLONE_FORMAT, 2), operation);
    const result = await callOffThread(
      lib.rbdClone3,
      parentPool.handle,
      parent,
      snapshot,
      childPool.handle,
      child,
      options[0],
    );
    if (result < 0) throw new CephError(operation, -result);
  } finally {
    lib.rbdImageOptionsDestroy(options[0]);
  }
}

/** Moves an image to the pool's trash at once expired: how an image clones still read from is removed. */
export async function trashRbdImage(pool: RadosPool, image: string): Promise<void> {
  const result = await callOffThread(ceph().rbdTrashMove, pool.handle, image, 0);
  if (result < 0) throw new CephError(`move RBD image ${pool.name}/${image} to the trash`, -result);
}

/** Removes an image from the trash; false while clones still read from it (or it is gone). */
export async function removeTrashedRbdImage(pool: RadosPool, id: string): Promise<boolean> {
  const result = await callOffThread(ceph().rbdTrashRemove, pool.handle, id, false);
  if (result >= 0) return true;
  // ENOENT: gone already; ENOTEMPTY/EBUSY: it still has snapshots its clones read from.
  if (result === -2 || result === -39 || result === -16) return false;
  throw new CephError(`remove RBD image id ${id} from the trash of ${pool.name}`, -result);
}

/** The names of the images in a pool (its namespace), the trash not included. */
export async function listRbdImages(pool: RadosPool): Promise<string[]> {
  const lib = ceph();
  let capacity = LIST_START;
  for (;;) {
    const array = koffi.alloc(ImageSpec, capacity) as Pointer;
    try {
      const count: [number] = [capacity];
      const result = await callOffThread(lib.rbdList2, pool.handle, array, count);
      if (result === -34 /* ERANGE */) {
        capacity = Math.max(count[0], capacity * 2);
        continue;
      }
      checkCeph(result, `list the RBD images of ${pool.name}`);
      const size = koffi.sizeof(ImageSpec);
      const names: string[] = [];
      for (let i = 0; i < count[0]; i++)
        names.push(String((koffi.decode(array, i * size, ImageSpec) as { name: string }).name));
      lib.rbdImageSpecListCleanup(array, count[0]);
      return names;
    } finally {
      koffi.free(array);
    }
  }
}

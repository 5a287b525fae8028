import koffi from 'koffi';
import { CephError, checkCeph } from './ceph-error';
import { RbdLocation, rbdLocationText } from './descriptor';
import {
  Pointer,
  RBD_FEATURES_DEFAULT,
  RBD_IMAGE_OPTION_FEATURES,
  RBD_LOCK_MODE_EXCLUSIVE,
  callOffThread,
  ceph,
  readCString,
} from './librbd';
import { RadosConnectOptions, RadosClient, RadosPool } from './rados-client';
import { openRbdHandle } from './rbd-handle';

/** Owners one image can report: an exclusive lock has one; the cap only bounds the output array. */
const MAX_LOCK_OWNERS = 16;

/** Another client holds the exclusive lock: `owners` names it, as lockOwners() would. */
export class LockBusyError extends CephError {
  constructor(
    operation: string,
    errno: number,
    readonly owners: readonly string[],
  ) {
    super(operation, errno, {
      kind: 'busy',
      meaning: owners.length > 0 ? `held by ${owners.join(', ')}` : 'held by another client',
    });
    this.name = 'LockBusyError';
  }
}

/**
 * Creates an image with `features` (by default layering, exclusive-lock, object-map, fast-diff and
 * deep-flatten), whatever rbd_default_features says: serving relies on the exclusive lock.
 */
export async function createRbdImage(
  pool: RadosPool,
  image: string,
  sizeBytes: number,
  features: bigint = RBD_FEATURES_DEFAULT,
): Promise<void> {
  const lib = ceph();
  const options: [Pointer | null] = [null];
  lib.rbdImageOptionsCreate(options);
  try {
    checkCeph(
      lib.rbdImageOptionsSetUint64(options[0], RBD_IMAGE_OPTION_FEATURES, features),
      `set the features of a new image ${pool.name}/${image}`,
    );
    const result = await callOffThread(lib.rbdCreate4, pool.handle, image, sizeBytes, options[0]);
    if (result < 0) throw new CephError(`create RBD image ${pool.name}/${image}`, -result);
  } finally {
    lib.rbdImageOptionsDestroy(options[0]);
  }
}

/** Removes an image; a client that still has it open makes this fail as busy (EBUSY). */
export async function removeRbdImage(pool: RadosPool, image: string): Promise<void> {
  const result = await callOffThread(ceph().rbdRemove, pool.handle, image);
  if (result < 0) throw new CephError(`remove RBD image ${pool.name}/${image}`, -result);
}

/** The size of an image in `pool`, or undefined when there is no such image. */
export async function rbdImageSize(pool: RadosPool, image: string): Promise<number | undefined> {
  const handle = await openRbdHandle(pool, image);
  if (handle === undefined) return undefined;
  try {
    const size: [number] = [0];
    checkCeph(ceph().rbdGetSize(handle, size), `get the size of RBD image ${pool.name}/${image}`);
    return Number(size[0]);
  } finally {
    await callOffThread(ceph().rbdClose, handle);
  }
}

/**
 * An open image in the serving process's main thread, on a cluster connection of its own (so
 * fencing it fences nothing else): size, resize, the exclusive lock and fencing. `handle` is what
 * queue threads serve I/O through (RbdBackend); they never open the image themselves, since a
 * second handle would contend for the exclusive lock.
 */
export class RbdImage {
  private closed = false;

  /** pool/image or pool/namespace/image, for messages. */
  readonly name: string;

  private constructor(
    readonly location: RbdLocation,
    readonly handle: Pointer,
    private readonly client: RadosClient,
    private readonly pool: RadosPool,
    /** open() made the image. */
    readonly created: boolean,
    /** Opened read-only: never locked, never resized. */
    readonly readOnly: boolean,
  ) {
    this.name = rbdLocationText(location);
  }

  /**
   * Connects and opens the image; a missing pool or image fails with kind 'not-found', unless
   * `create` is given: then a missing image is created first (`created` says so). A read-only
   * image is never created.
   */
  static async open(
    options: RadosConnectOptions,
    location: RbdLocation,
    create?: { sizeBytes: number },
    mode: { readOnly: boolean } = { readOnly: false },
  ): Promise<RbdImage> {
    if (create && mode.readOnly) throw new Error('a read-only RBD image is never created or grown');
    const name = rbdLocationText(location);
    const client = await RadosClient.connect(options);
    let pool: RadosPool | undefined;
    try {
      pool = await client.openPool(location.pool, location.namespace);
      let handle = await openRbdHandle(pool, location.image, mode);
      let created = false;
      if (handle === undefined && create) {
        created = await createUnlessExists(pool, location.image, create.sizeBytes);
        handle = await openRbdHandle(pool, location.image);
      }
      if (handle === undefined)
        throw new CephError(`open RBD image ${name}`, 2, {
          kind: 'not-found',
          meaning: `no image ${location.image} in ${pool.name}`,
        });
      return new RbdImage(location, handle, client, pool, created, mode.readOnly);
    } catch (error) {
      pool?.close();
      client.shutdown();
      throw error;
    }
  }

  /** Runs `action` on a connection to the image's pool, closed afterwards (image creation, removal). */
  static async withPool<T>(
    options: RadosConnectOptions,
    location: Pick<RbdLocation, 'pool' | 'namespace'>,
    action: (pool: RadosPool, client: RadosClient) => Promise<T>,
  ): Promise<T> {
    const client = await RadosClient.connect(options);
    try {
      const pool = await client.openPool(location.pool, location.namespace);
      try {
        return await action(pool, client);
      } finally {
        pool.close();
      }
    } finally {
      client.shutdown();
    }
  }

  size(): number {
    const size: [number] = [0];
    checkCeph(ceph().rbdGetSize(this.handle, size), `get the size of RBD image ${this.name}`);
    return Number(size[0]);
  }

  /**
   * Grows the image to `bytes`; shrinking is refused. A read-only image is grown by another client
   * (the controller): it only has to have that size already.
   */
  async resize(bytes: number): Promise<void> {
    const current = this.size();
    if (bytes < current)
      throw new RangeError(`refusing to shrink RBD image ${this.name} from ${current} to ${bytes} bytes`);
    if (this.readOnly && bytes > current)
      throw new CephError(`resize RBD image ${this.name} to ${bytes} bytes`, 30, {
        kind: 'other',
        meaning: `it is open read-only and has ${current} bytes`,
      });
    if (this.readOnly) return;
    const result = await callOffThread(ceph().rbdResize2, this.handle, bytes, false, null, null);
    if (result < 0) throw new CephError(`resize RBD image ${this.name} to ${bytes} bytes`, -result);
  }

  /** Who holds the image's exclusive lock (none: []), in the form myLockOwnerName() gives. */
  async lockOwners(): Promise<string[]> {
    const lib = ceph();
    const array = koffi.alloc('void *', MAX_LOCK_OWNERS) as Pointer;
    try {
      const mode: [number] = [0];
      const count: [number] = [MAX_LOCK_OWNERS];
      const result = await callOffThread(lib.rbdLockGetOwners, this.handle, mode, array, count);
      if (result === -2) return []; // ENOENT: nobody holds it
      checkCeph(result, `list the lock owners of RBD image ${this.name}`);
      const owners: string[] = [];
      for (let i = 0; i < count[0]; i++) {
        owners.push(readCString(koffi.decode(array, i * 8, 'void *') as Pointer));
      }
      lib.rbdLockGetOwnersCleanup(array, count[0]);
      return owners;
    } finally {
      koffi.free(array);
    }
  }

  /**
   * Takes the exclusive lock and keeps it: librbd never hands it over on another client's request.
   * A live holder refuses at once (LockBusyError naming it). A holder that does not answer (dead
   * or frozen) is broken by librbd, which blocklists it, once its watch expires
   * (osd_client_watch_timeout, 30 s by default); breakLockOf() does that at once.
   */
  async acquireExclusiveLock(): Promise<void> {
    const result = await callOffThread(ceph().rbdLockAcquire, this.handle, RBD_LOCK_MODE_EXCLUSIVE);
    if (result >= 0) return;
    const operation = `acquire the exclusive lock of RBD image ${this.name}`;
    if (result === -30 /* EROFS */ || result === -16 /* EBUSY */)
      throw new LockBusyError(operation, -result, await this.lockOwners());
    throw new CephError(operation, -result);
  }

  async releaseExclusiveLock(): Promise<void> {
    const result = await callOffThread(ceph().rbdLockRelease, this.handle);
    if (result < 0) throw new CephError(`release the exclusive lock of RBD image ${this.name}`, -result);
  }

  isExclusiveLockOwner(): boolean {
    const owner: [number] = [0];
    checkCeph(ceph().rbdIsExclusiveLockOwner(this.handle, owner), `query the lock of RBD image ${this.name}`);
    return owner[0] !== 0;
  }

  /**
   * Breaks the exclusive lock `owner` holds and fences it: the cluster blocklists that client, so
   * none of its writes lands any more (they fail with ESHUTDOWN). The lock is then free to acquire.
   */
  async breakLockOf(owner: string): Promise<void> {
    const result = await callOffThread(ceph().rbdLockBreak, this.handle, RBD_LOCK_MODE_EXCLUSIVE, owner);
    if (result >= 0) return;
    const operation = `break the lock of ${owner} on RBD image ${this.name}`;
    if (result === -2)
      throw new CephError(operation, 2, { kind: 'not-found', meaning: 'the image is not locked' });
    if (result === -16) throw new LockBusyError(operation, 16, await this.lockOwners());
    throw new CephError(operation, -result);
  }

  /** How lockOwners() shows this client (its connection's address), whether or not it holds the lock. */
  myLockOwnerName(): string {
    return this.client.address();
  }

  /** Closes the image (librbd waits for its I/O and releases the lock) and the connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      const result = await callOffThread(ceph().rbdClose, this.handle);
      if (result < 0) throw new CephError(`close RBD image ${this.name}`, -result);
    } finally {
      this.pool.close();
      this.client.shutdown();
    }
  }
}

/** Creates the image; false when another client created it first. */
async function createUnlessExists(pool: RadosPool, image: string, sizeBytes: number): Promise<boolean> {
  try {
    await createRbdImage(pool, image, sizeBytes);
    return true;
  } catch (error) {
    if (error instanceof CephError && error.kind === 'exists') return false;
    throw error;
  }
}

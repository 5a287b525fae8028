import koffi from 'koffi';

/*
 * Bindings to librados and librbd (Ceph 16, /usr/include/rados/librados.h and rbd/librbd.h).
 * Handles (rados_t, rados_ioctx_t, rbd_image_t, rbd_completion_t) are opaque pointers, which koffi
 * hands out as BigInt; memory librbd keeps past a call (iovec tables, output cells) is allocated
 * with koffi.alloc and passed by address. Every call returns 0 or a count on success and -errno on
 * failure (errno itself is not used). The libraries are loaded on first use, so a process that
 * never serves an RBD image does not need them installed.
 */

export const EVENT_TYPE_EVENTFD = 2;
export const RBD_LOCK_MODE_EXCLUSIVE = 0;
export const RBD_IMAGE_OPTION_FEATURES = 1;
export const RBD_IMAGE_OPTION_CLONE_FORMAT = 12;
/** rbd_aio_write_zeroes: allocate the range (zeroes written) instead of releasing it. */
export const RBD_WRITE_ZEROES_FLAG_THICK_PROVISION = 1;

/** layering, exclusive-lock, object-map, fast-diff, deep-flatten (RBD_FEATURES_DEFAULT in rbd/features.h). */
export const RBD_FEATURES_DEFAULT = 1n | 4n | 8n | 16n | 32n;

/** A pointer as koffi represents it; null for NULL. */
export type Pointer = bigint;

/*
 * Structures librbd fills in, decoded from memory allocated for them. Anonymous, so that every
 * thread that loads this module may define them again.
 */
/** rbd_linked_image_spec_t: an image another links to (a clone's parent). */
export const LinkedImageSpec = koffi.struct({
  pool_id: 'int64_t',
  pool_name: 'char *',
  pool_namespace: 'char *',
  image_id: 'char *',
  image_name: 'char *',
  trash: 'bool',
});
/** rbd_snap_spec_t (its namespace type is an enum: an int). */
export const SnapSpec = koffi.struct({ id: 'uint64_t', namespace_type: 'int', name: 'char *' });
/** rbd_image_spec_t: an entry of rbd_list2. */
export const ImageSpec = koffi.struct({ id: 'char *', name: 'char *' });
/** struct timespec on a 64-bit Linux. */
export const Timespec = koffi.struct({ tv_sec: 'int64_t', tv_nsec: 'int64_t' });

function bind() {
  const rados = load('librados.so.2', 'librados2');
  const rbd = load('librbd.so.1', 'librbd1');
  return {
    radosCreate2: rados.func(
      'int rados_create2(_Out_ void **cluster, const char *clustername, const char *name, uint64_t flags)',
    ),
    radosConfReadFile: rados.func('int rados_conf_read_file(void *cluster, const char *path)'),
    radosConfSet: rados.func('int rados_conf_set(void *cluster, const char *option, const char *value)'),
    radosConnect: rados.func('int rados_connect(void *cluster)'),
    radosShutdown: rados.func('void rados_shutdown(void *cluster)'),
    radosGetAddrs: rados.func('int rados_getaddrs(void *cluster, void *addrs)'),
    radosBufferFree: rados.func('void rados_buffer_free(void *buffer)'),
    radosIoctxCreate: rados.func(
      'int rados_ioctx_create(void *cluster, const char *pool, _Out_ void **ioctx)',
    ),
    radosIoctxSetNamespace: rados.func('void rados_ioctx_set_namespace(void *ioctx, const char *nspace)'),
    radosIoctxDestroy: rados.func('void rados_ioctx_destroy(void *ioctx)'),

    rbdImageOptionsCreate: rbd.func('void rbd_image_options_create(_Out_ void **options)'),
    rbdImageOptionsDestroy: rbd.func('void rbd_image_options_destroy(void *options)'),
    rbdImageOptionsSetUint64: rbd.func(
      'int rbd_image_options_set_uint64(void *options, int option, uint64_t value)',
    ),
    rbdCreate4: rbd.func('int rbd_create4(void *ioctx, const char *name, uint64_t size, void *options)'),
    rbdRemove: rbd.func('int rbd_remove(void *ioctx, const char *name)'),
    rbdOpen: rbd.func('int rbd_open(void *ioctx, const char *name, _Out_ void **image, const char *snap)'),
    rbdOpenReadOnly: rbd.func(
      'int rbd_open_read_only(void *ioctx, const char *name, _Out_ void **image, const char *snap)',
    ),
    rbdClose: rbd.func('int rbd_close(void *image)'),
    rbdGetSize: rbd.func('int rbd_get_size(void *image, _Out_ uint64_t *size)'),
    rbdResize2: rbd.func(
      'int rbd_resize2(void *image, uint64_t size, bool allowShrink, void *progress, void *progressArg)',
    ),
    rbdOpenById: rbd.func(
      'int rbd_open_by_id(void *ioctx, const char *id, _Out_ void **image, const char *snap)',
    ),
    rbdGetId: rbd.func('int rbd_get_id(void *image, _Out_ char *id, size_t length)'),
    rbdClone3: rbd.func(
      'int rbd_clone3(void *parentIoctx, const char *parent, const char *snap, void *childIoctx, const char *child, void *options)',
    ),
    rbdGetParent: rbd.func('int rbd_get_parent(void *image, void *parentImage, void *parentSnap)'),
    rbdLinkedImageSpecCleanup: rbd.func('void rbd_linked_image_spec_cleanup(void *spec)'),
    rbdSnapSpecCleanup: rbd.func('void rbd_snap_spec_cleanup(void *spec)'),
    rbdFlatten: rbd.func('int rbd_flatten(void *image)'),
    rbdSnapCreate: rbd.func('int rbd_snap_create(void *image, const char *name)'),
    rbdSnapRemove: rbd.func('int rbd_snap_remove(void *image, const char *name)'),
    rbdSnapExists: rbd.func('int rbd_snap_exists(void *image, const char *name, _Out_ bool *exists)'),
    rbdSnapGetId: rbd.func('int rbd_snap_get_id(void *image, const char *name, _Out_ uint64_t *id)'),
    rbdSnapGetTimestamp: rbd.func('int rbd_snap_get_timestamp(void *image, uint64_t id, void *timestamp)'),
    rbdMetadataGet: rbd.func(
      'int rbd_metadata_get(void *image, const char *key, void *value, _Inout_ size_t *length)',
    ),
    rbdMetadataSet: rbd.func('int rbd_metadata_set(void *image, const char *key, const char *value)'),
    rbdTrashMove: rbd.func('int rbd_trash_move(void *ioctx, const char *name, uint64_t delay)'),
    rbdTrashRemove: rbd.func('int rbd_trash_remove(void *ioctx, const char *id, bool force)'),
    rbdList2: rbd.func('int rbd_list2(void *ioctx, void *images, _Inout_ size_t *count)'),
    rbdImageSpecListCleanup: rbd.func('void rbd_image_spec_list_cleanup(void *images, size_t count)'),

    rbdIsExclusiveLockOwner: rbd.func('int rbd_is_exclusive_lock_owner(void *image, _Out_ int *owner)'),
    rbdLockAcquire: rbd.func('int rbd_lock_acquire(void *image, int mode)'),
    rbdLockRelease: rbd.func('int rbd_lock_release(void *image)'),
    rbdLockGetOwners: rbd.func(
      'int rbd_lock_get_owners(void *image, _Out_ int *mode, void *owners, _Inout_ size_t *maxOwners)',
    ),
    rbdLockGetOwnersCleanup: rbd.func('void rbd_lock_get_owners_cleanup(void *owners, size_t count)'),
    rbdLockBreak: rbd.func('int rbd_lock_break(void *image, int mode, const char *owner)'),

    rbdAioCreateCompletion: rbd.func(
      'int rbd_aio_create_completion(void *arg, void *callback, void *completion)',
    ),
    rbdAioReadv: rbd.func(
      'int rbd_aio_readv(void *image, void *iov, int iovcnt, uint64_t offset, void *completion)',
    ),
    rbdAioWritev: rbd.func(
      'int rbd_aio_writev(void *image, void *iov, int iovcnt, uint64_t offset, void *completion)',
    ),
    rbdAioFlush: rbd.func('int rbd_aio_flush(void *image, void *completion)'),
    rbdAioDiscard: rbd.func(
      'int rbd_aio_discard(void *image, uint64_t offset, uint64_t length, void *completion)',
    ),
    rbdAioWriteZeroes: rbd.func(
      'int rbd_aio_write_zeroes(void *image, uint64_t offset, size_t length, void *completion, int zeroFlags, int opFlags)',
    ),
    rbdAioGetReturnValue: rbd.func('intptr_t rbd_aio_get_return_value(void *completion)'),
    rbdAioRelease: rbd.func('void rbd_aio_release(void *completion)'),
    rbdSetImageNotification: rbd.func('int rbd_set_image_notification(void *image, int fd, int type)'),
    rbdPollIoEvents: rbd.func('int rbd_poll_io_events(void *image, void *completions, int count)'),
  };
}

function load(file: string, debianPackage: string): ReturnType<typeof koffi.load> {
  try {
    return koffi.load(file);
  } catch (error) {
    const why = error instanceof Error ? error.message : String(error);
    throw new Error(`cannot load ${file} (Debian package ${debianPackage}), needed for RBD images: ${why}`);
  }
}

export type Ceph = ReturnType<typeof bind>;

let bound: Ceph | undefined;

/** The bindings, loading the libraries on first use (in each thread that uses them). */
export function ceph(): Ceph {
  bound ??= bind();
  return bound;
}

type NativeFunction = Ceph[keyof Ceph];

/**
 * Runs a call that may wait on the network (connect, open, lock operations: up to the configured
 * timeouts) on one of koffi's worker threads, so the calling thread's event loop keeps running.
 */
export function callOffThread(fn: NativeFunction, ...args: unknown[]): Promise<number> {
  return new Promise((resolve, reject) => {
    fn.async(...args, (error: unknown, result: unknown) => {
      if (error) reject(error instanceof Error ? error : new Error(String(error)));
      else resolve(Number(result));
    });
  });
}

/** A zeroed native cell of one pointer, for output parameters read after an asynchronous call. */
export class PointerCell {
  readonly address: Pointer = koffi.alloc('void *', 1) as Pointer;
  private readonly view = new BigUint64Array(koffi.view(this.address, 8));

  constructor() {
    this.view[0] = 0n;
  }

  get value(): Pointer {
    return this.view[0]!;
  }

  set value(pointer: Pointer) {
    this.view[0] = pointer;
  }

  free(): void {
    koffi.free(this.address);
  }
}

/** The NUL-terminated string at `pointer`. */
export function readCString(pointer: Pointer): string {
  return koffi.decode(pointer, 'char', -1) as string;
}

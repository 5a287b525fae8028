import { BackendDescriptor } from './descriptor';
import { FileBackendProvider } from './file';
import { RbdBackendProvider } from './rbd';
import { BackendProvider } from './types';

/**
 * Opens the storage a device serves, in the serving process's main thread. With `sizeBytes`,
 * missing storage is created and smaller storage grows; without it, missing storage is an error.
 */
export async function openBackend(
  backend: BackendDescriptor,
  sizeBytes: number | undefined,
): Promise<BackendProvider> {
  if (backend.kind === 'file') return FileBackendProvider.create(backend.path, sizeBytes);
  // Writers on other nodes change the image under a multi-writer's feet: it caches nothing.
  const cache = backend.sharing === 'multi-writer' ? { rbdCache: false } : {};
  // A device's requests wait out a cluster that does not answer (a pause, like a file system on a
  // stalled disk) instead of failing after rados_osd_op_timeout.
  return RbdBackendProvider.open(
    { ...backend.client, timeouts: { osdOpSeconds: 0 }, ...cache },
    backend.location,
    sizeBytes,
    backend.sharing,
  );
}

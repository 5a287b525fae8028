import { BackendDescriptor } from './descriptor';
import { FileBackendProvider } from './file';
import { BackendProvider } from './types';

/**
 * Opens the storage a device serves, in the serving process's main thread. With `sizeBytes`,
 * missing storage is created and smaller storage grows; without it, missing storage is an error.
 */
export function openBackend(backend: BackendDescriptor, sizeBytes: number | undefined): BackendProvider {
  return FileBackendProvider.create(backend.path, sizeBytes);
}

import { FileBackend } from './file';
import { RbdBackend } from './rbd';
import { BlockBackend, QueueBackendOptions, QueueBackendSpec } from './types';

/** Opens a queue thread's own instance of the backend the main thread described. */
export function openQueueBackend(spec: QueueBackendSpec, options: QueueBackendOptions): BlockBackend {
  const { readOnly, keepAllocation, watcher, largeIo } = options;
  if (spec.kind === 'file') return FileBackend.open(spec.path, readOnly, keepAllocation, largeIo);
  return new RbdBackend(spec.image, { readOnly, keepAllocation }, watcher);
}

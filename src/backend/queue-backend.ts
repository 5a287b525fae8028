import { FileBackend } from './file';
import { BlockBackend, QueueBackendOptions, QueueBackendSpec } from './types';

/** Opens a queue thread's own instance of the backend the main thread described. */
export function openQueueBackend(spec: QueueBackendSpec, options: QueueBackendOptions): BlockBackend {
  return FileBackend.open(spec.path, options.readOnly, options.keepAllocation);
}

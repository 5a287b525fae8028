import { MessagePort } from 'node:worker_threads';
import { QueueBackendSpec } from '../backend/types';
import { BlkGeometry } from '../virtio/blk/config';
import { ThreadLogRecord } from './thread-log';

/** What the threads serving a device need to know of it (structured-clone friendly). */
export interface DeviceRegistration {
  name: string;
  deviceFd: number;
  backend: QueueBackendSpec;
  geometry: BlkGeometry;
  state: SharedArrayBuffer;
  /** The device's request counters (see io-counters.ts). */
  counters: SharedArrayBuffer;
  /** Whether the queue threads count each request in `counters` (requests in flight are always counted). */
  countRequests: boolean;
  /** Large transfers of an image file go to the queue thread's helpers (large-io-pool.ts). */
  largeIoHelpers: boolean;
  /** The device's in-flight log (one region per queue). */
  inflightLogPath: string;
  /** A previous server left the device running: queues go on from the in-flight log. */
  takeover: boolean;
  /** The wake eventfd of the thread serving each queue. */
  queueWakeFds: number[];
  /** The wake eventfd of the thread answering the device's control messages. */
  controlWakeFd: number;
}

export type ThreadCommand =
  | { type: 'attach'; id: number; device: DeviceRegistration; queue: number }
  | { type: 'attach-control'; id: number; device: DeviceRegistration }
  | { type: 'detach'; id: number; name: string }
  | { type: 'resize'; id: number; name: string; bytes: number }
  | { type: 'exit'; id: number };

export type ThreadReply =
  { type: 'done'; id: number; notified?: boolean } | { type: 'failed'; id: number; error: string };

/** workerData of a device thread (queue-worker.ts). */
export interface ThreadData {
  wakeFd: number;
  commands: MessagePort;
  logLevel: string;
}

/** What a device thread posts to the main thread: that it is ready, and its log records. */
export type ThreadEvent = { type: 'ready' } | ThreadLogRecord;

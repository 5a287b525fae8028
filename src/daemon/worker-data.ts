import { BlkGeometry } from '../virtio/blk/config';

/** What every thread serving a device gets at start (structured-clone friendly). */
export interface DeviceThreadData {
  name: string;
  deviceFd: number;
  imagePath: string;
  geometry: BlkGeometry;
  state: SharedArrayBuffer;
  /** One eventfd per queue thread (then one for the control thread): written to wake it. */
  wakeFds: number[];
  logLevel: string;
}

export interface QueueThreadData extends DeviceThreadData {
  queue: number;
}

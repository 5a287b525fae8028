import { parentPort, workerData } from 'node:worker_threads';
import { FileBackend } from '../backend/file';
import { log, setLogLevel } from '../log';
import * as libc from '../sys/libc';
import { VduseDevice } from '../vduse/device';
import { IotlbMemory } from '../vduse/iotlb';
import { blkLimits } from '../virtio/blk/config';
import { BlkRequestHandler, Completion } from '../virtio/blk/request-handler';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, hasFeature } from '../virtio/features';
import { QueueBrokenError, SplitQueue } from '../virtio/split-queue';
import { SharedDeviceState } from './shared-state';
import { QueueThreadData } from './worker-data';

const IDLE_POLL_MS = 1000;

/**
 * Serves one virtqueue on its own thread: waits for kicks, runs every available chain through the
 * virtio-blk handler and returns it on the used ring, with one interrupt per batch at most.
 */
class QueueServer {
  private readonly state: SharedDeviceState;
  private readonly device: VduseDevice;
  private readonly memory: IotlbMemory;
  private readonly handler: BlkRequestHandler;
  private readonly kickFd = libc.createEventFd();
  private readonly poller: libc.PollSet;
  private queue: SplitQueue | null = null;
  private epoch = 0;
  private iotlbGeneration = 0;
  private inFlight = 0;
  private kickFdInstalled = false;

  constructor(private readonly data: QueueThreadData) {
    this.state = new SharedDeviceState(data.state, data.geometry.queues);
    this.device = VduseDevice.attach(data.deviceFd);
    this.memory = new IotlbMemory(this.device);
    const backend = FileBackend.open(data.imagePath, data.geometry.readOnly);
    this.handler = new BlkRequestHandler(
      backend,
      blkLimits(data.geometry),
      () => this.state.capacityBytes,
      (head, message) =>
        log.warn('request failed', { device: data.name, queue: data.queue, head, error: message }),
    );
    this.poller = new libc.PollSet([this.kickFd, this.wakeFd]);
  }

  private get wakeFd(): number {
    return this.data.wakeFds[this.data.queue]!;
  }

  async run(): Promise<void> {
    while (!this.state.stopRequested) {
      this.followControl();
      if (this.queue) this.serve();
      await this.waitForWork();
    }
    this.device.setKickFd(this.data.queue, -1);
    libc.closeFd(this.kickFd);
  }

  /** Applies what the control thread published: start, stop (reset) or an IOTLB invalidation. */
  private followControl(): void {
    const generation = this.state.iotlbGeneration;
    if (generation !== this.iotlbGeneration) {
      this.iotlbGeneration = generation;
      const lastAvail = this.queue?.lastAvailIdx;
      this.queue = null;
      this.memory.clear();
      if (this.state.running && lastAvail !== undefined) this.attachQueue(lastAvail);
    }
    const epoch = this.state.runEpoch;
    if (epoch === this.epoch) return;
    this.epoch = epoch;
    this.queue = null;
    this.memory.clear();
    if (this.state.running) this.attachQueue(undefined);
    this.state.acknowledge(this.data.queue, epoch);
  }

  private attachQueue(lastAvailIdx: number | undefined): void {
    const index = this.data.queue;
    try {
      const info = this.device.queueInfo(index);
      if (!info.ready) return;
      const features = this.device.negotiatedFeatures();
      this.queue = new SplitQueue(
        this.memory,
        {
          size: info.num,
          descAddr: Number(info.descAddr),
          availAddr: Number(info.driverAddr),
          usedAddr: Number(info.deviceAddr),
        },
        {
          eventIdx: hasFeature(features, VIRTIO_F_EVENT_IDX),
          indirect: hasFeature(features, VIRTIO_F_INDIRECT_DESC),
          ...(lastAvailIdx === undefined ? {} : { lastAvailIdx }),
        },
      );
      this.state.setBroken(index, false);
      if (!this.kickFdInstalled) {
        this.device.setKickFd(index, this.kickFd);
        this.kickFdInstalled = true;
      }
      log.debug('queue started', { device: this.data.name, queue: index, size: info.num });
    } catch (error) {
      this.markBroken(error);
    }
  }

  private serve(): void {
    const queue = this.queue!;
    try {
      queue.suppressKicks();
      do {
        let chain = queue.pop();
        while (chain) {
          this.complete(queue, chain.head, this.handler.handle(chain));
          chain = queue.pop();
        }
        this.state.setLastAvailIdx(this.data.queue, queue.lastAvailIdx);
        this.interruptIfWanted(queue);
      } while (!queue.armKicks());
    } catch (error) {
      this.markBroken(error);
    }
  }

  private complete(queue: SplitQueue, head: number, completion: Completion): void {
    if (typeof completion === 'number') {
      queue.pushUsed(head, completion);
      return;
    }
    this.inFlight++;
    completion.then(
      (written) => {
        this.inFlight--;
        // A reset or invalidation in between retired this queue: the driver no longer waits for it.
        if (this.queue !== queue) return;
        queue.pushUsed(head, written);
        this.interruptIfWanted(queue);
      },
      (error: unknown) => this.markBroken(error),
    );
  }

  private interruptIfWanted(queue: SplitQueue): void {
    if (queue.needsInterrupt()) this.device.injectQueueIrq(this.data.queue);
  }

  private markBroken(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof QueueBrokenError || error instanceof Error) {
      log.error('queue broken: no more requests are served on it until the driver resets the device', {
        device: this.data.name,
        queue: this.data.queue,
        error: message,
      });
    }
    this.queue = null;
    this.state.setBroken(this.data.queue, true);
  }

  /** Sleeps until a kick or a wake-up; lets the event loop run while asynchronous I/O is in flight. */
  private async waitForWork(): Promise<void> {
    if (this.inFlight === 0) {
      this.poller.wait(IDLE_POLL_MS);
    } else {
      await new Promise<void>((resolve) => setImmediate(resolve));
      this.poller.wait(0);
    }
    libc.drainEventFd(this.kickFd);
    libc.drainEventFd(this.wakeFd);
  }
}

const data = workerData as QueueThreadData;
setLogLevel(data.logLevel);
const server = new QueueServer(data);
parentPort!.postMessage({ type: 'ready' });
server.run().then(
  () => parentPort!.postMessage({ type: 'stopped' }),
  (error: unknown) => {
    log.error('queue thread failed', { device: data.name, queue: data.queue, error: String(error) });
    process.exitCode = 1;
  },
);

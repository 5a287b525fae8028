import { parentPort, workerData } from 'node:worker_threads';
import { FileBackend } from '../backend/file';
import { log, setLogLevel } from '../log';
import * as libc from '../sys/libc';
import { VduseDevice } from '../vduse/device';
import { IotlbMemory } from '../vduse/iotlb';
import { blkLimits } from '../virtio/blk/config';
import { BlkRequestHandler, Completion } from '../virtio/blk/request-handler';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, hasFeature } from '../virtio/features';
import { SplitQueue } from '../virtio/split-queue';
import { SharedDeviceState } from './shared-state';
import { EventThread } from './event-thread';
import { DeviceRegistration, ThreadData } from './worker-data';

/**
 * Serves one virtqueue: on each kick, runs every available chain through the virtio-blk handler
 * and returns it on the used ring, with one interrupt per batch at most.
 */
class QueueServer {
  private readonly state: SharedDeviceState;
  private readonly device: VduseDevice;
  private readonly memory: IotlbMemory;
  private readonly backend: FileBackend;
  private readonly handler: BlkRequestHandler;
  readonly kickFd = libc.createEventFd();
  private queue: SplitQueue | null = null;
  private epoch = 0;
  private iotlbGeneration = 0;
  inFlight = 0;
  private kickFdInstalled = false;
  private closing = false;
  private closed = false;

  constructor(
    private readonly data: DeviceRegistration,
    private readonly index: number,
  ) {
    this.state = new SharedDeviceState(data.state, data.geometry.queues);
    this.device = VduseDevice.attach(data.deviceFd);
    this.memory = new IotlbMemory(this.device);
    this.backend = FileBackend.open(data.imagePath, data.geometry.readOnly);
    this.handler = new BlkRequestHandler(
      this.backend,
      blkLimits(data.geometry),
      () => this.state.capacityBytes,
      (head, message) =>
        log.warn('request failed', { device: data.name, queue: index, head, error: message }),
    );
  }

  onKick(): void {
    libc.drainEventFd(this.kickFd);
    if (this.queue) this.serve();
  }

  /** Stops serving; the backend and the mappings go once no request is in flight any more. */
  close(): void {
    this.closing = true;
    if (this.kickFdInstalled) this.device.setKickFd(this.index, -1);
    libc.closeFd(this.kickFd);
    this.dropQueue();
  }

  /** With nothing in flight, retired mappings (and, when closing, the backend) can go. */
  private settle(): void {
    if (this.inFlight > 0) return;
    this.memory.release();
    if (this.closing && !this.closed) {
      this.closed = true;
      this.backend.close();
    }
  }

  /** Applies what the control thread published: start, stop (reset) or an IOTLB invalidation. */
  followControl(): void {
    const generation = this.state.iotlbGeneration;
    if (generation !== this.iotlbGeneration) {
      this.iotlbGeneration = generation;
      const lastAvail = this.queue?.lastAvailIdx;
      this.dropQueue();
      if (this.state.running && lastAvail !== undefined) this.attachQueue(lastAvail);
    }
    const epoch = this.state.runEpoch;
    if (epoch === this.epoch) return;
    this.epoch = epoch;
    this.dropQueue();
    if (this.state.running) this.attachQueue(undefined);
    this.state.acknowledge(this.index, epoch);
    // Kicks that came before the kick eventfd was installed are not repeated: look now.
    if (this.queue) this.serve();
  }

  /** Forgets the rings and their mappings (they are mapped afresh when the queue attaches again). */
  private dropQueue(): void {
    this.queue = null;
    this.memory.clear();
    this.settle();
  }

  private attachQueue(lastAvailIdx: number | undefined): void {
    const index = this.index;
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
        this.state.setLastAvailIdx(this.index, queue.lastAvailIdx);
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
    completion
      .then((written) => {
        // A reset or invalidation in between retired this queue: the driver no longer waits for it.
        if (this.queue !== queue) return;
        queue.pushUsed(head, written);
        this.interruptIfWanted(queue);
      })
      .catch((error: unknown) => this.markBroken(error))
      .finally(() => {
        this.inFlight--;
        this.settle();
      });
  }

  private interruptIfWanted(queue: SplitQueue): void {
    if (queue.needsInterrupt()) this.device.injectQueueIrq(this.index);
  }

  private markBroken(error: unknown): void {
    log.error('queue broken: no more requests are served on it until the driver resets the device', {
      device: this.data.name,
      queue: this.index,
      error: error instanceof Error ? error.message : String(error),
    });
    this.queue = null;
  }
}

const data = workerData as ThreadData;
setLogLevel(data.logLevel);
const servers = new Map<string, QueueServer[]>();
/** Detached servers whose last requests are still in flight. */
const draining = new Set<QueueServer>();
const thread: EventThread = new EventThread(
  data.wakeFd,
  data.commands,
  (command) => {
    if (command.type === 'attach') {
      const server = new QueueServer(command.device, command.queue);
      const list = servers.get(command.device.name) ?? [];
      list.push(server);
      servers.set(command.device.name, list);
      thread.watch(server.kickFd, () => server.onKick());
      server.followControl();
    } else if (command.type === 'detach') {
      for (const server of servers.get(command.name) ?? []) {
        thread.unwatch(server.kickFd);
        server.close();
        if (server.inFlight > 0) draining.add(server);
      }
      servers.delete(command.name);
    }
    return undefined;
  },
  () => {
    for (const server of draining) if (server.inFlight === 0) draining.delete(server);
    for (const list of servers.values()) for (const server of list) server.followControl();
  },
  () => {
    if (draining.size > 0) return true;
    for (const list of servers.values()) for (const server of list) if (server.inFlight > 0) return true;
    return false;
  },
);
parentPort!.postMessage({ type: 'ready' });
thread.run().catch((error: unknown) => {
  log.error('queue thread failed', { error: String(error) });
  process.exitCode = 1;
});

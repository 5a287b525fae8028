import { parentPort, workerData } from 'node:worker_threads';
import { LargeIoPool } from '../backend/large-io-pool';
import { openQueueBackend } from '../backend/queue-backend';
import { BlockBackend, FdWatcher } from '../backend/types';
import { threadLog } from './thread-log';
import { ControlServer } from './control-server';
import * as libc from '../sys/libc';
import { isErrno } from '../sys/errors';
import { VduseDevice } from '../vduse/device';
import { IotlbMemory } from '../vduse/iotlb';
import { blkLimits } from '../virtio/blk/config';
import { BlkRequestHandler, Completion } from '../virtio/blk/request-handler';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, hasFeature } from '../virtio/features';
import { Chain, SplitQueue } from '../virtio/split-queue';
import { totalLength } from '../virtio/memory';
import { SharedDeviceState } from './shared-state';
import { EventThread } from './event-thread';
import { InflightLog } from './inflight-log';
import { IoCounters, QueueIoCounters } from './io-counters';
import { QueuePause } from './pause';
import { DeviceRegistration, ThreadData } from './worker-data';

/**
 * Within a batch, the driver hears of what is done at least every this many bytes moved: while
 * the rest of the batch is served it completes those requests (on a 1 MiB read, copying it out of
 * the bounce buffer) and submits new ones, instead of waiting for the whole batch.
 */
const INTERRUPT_EVERY_BYTES = 256 * 1024;

/**
 * What one queue serves before the other queues of its thread get a turn: 4 ms of 1 MiB reads
 * under emulation, more than any batch of small requests (a full ring of 4 KiB is 1 MiB).
 */
const TURN_BYTES = 4 * 1024 * 1024;

function chainBytes(chain: Chain): number {
  return totalLength(chain.readable) + totalLength(chain.writable);
}

/**
 * Serves one virtqueue: on each kick, runs every available chain through the virtio-blk handler
 * and returns it on the used ring, with one interrupt per batch (and per INTERRUPT_EVERY_BYTES
 * moved) at most. Every chain taken and returned is recorded in the device's in-flight log, so a
 * successor can finish the run.
 */
class QueueServer {
  private readonly state: SharedDeviceState;
  private readonly device: VduseDevice;
  private readonly memory: IotlbMemory;
  private readonly backend: BlockBackend;
  private readonly handler: BlkRequestHandler;
  private readonly inflight: InflightLog;
  private readonly pause: QueuePause;
  private readonly counters: QueueIoCounters;
  /** The request counters the handler reports to, unless requests go uncounted. */
  private readonly requestCounters: QueueIoCounters | undefined;
  /** The run a takeover found the queue in: it goes on from the in-flight log. */
  private readonly takeoverEpoch: number | undefined;
  readonly kickFd = libc.createEventFd();
  private queue: SplitQueue | null = null;
  private epoch = 0;
  private iotlbGeneration = 0;
  inFlight = 0;
  private interruptQueued = false;
  private kickedWhilePaused = false;
  private kickFdInstalled = false;
  private closing = false;
  private closed = false;
  private onClosed: (() => void) | undefined;
  /** Settles once close() was called and the last request in flight completed: the backend is closed. */
  readonly whenClosed = new Promise<void>((resolve) => (this.onClosed = resolve));

  constructor(
    private readonly data: DeviceRegistration,
    private readonly index: number,
    watcher: FdWatcher,
    largeIo: LargeIoPool | undefined,
  ) {
    this.state = new SharedDeviceState(data.state, data.geometry.queues);
    this.device = VduseDevice.attach(data.deviceFd);
    this.memory = new IotlbMemory(this.device);
    this.backend = openQueueBackend(data.backend, {
      readOnly: data.geometry.readOnly,
      keepAllocation: data.geometry.keepAllocation,
      watcher,
      largeIo,
    });
    this.counters = new IoCounters(data.counters, data.geometry.queues).queue(index);
    this.requestCounters = data.countRequests ? this.counters : undefined;
    this.handler = new BlkRequestHandler(
      this.backend,
      blkLimits(data.geometry),
      () => this.state.capacityBytes,
      (head, message, cause) => {
        if (isErrno(cause, 'ENOSPC') || isErrno(cause, 'EDQUOT')) this.counters.noSpace();
        threadLog.warn('request failed', { device: data.name, queue: index, head, error: message });
      },
      this.requestCounters,
    );
    this.inflight = InflightLog.open(data.inflightLogPath, index, data.geometry.queueSize);
    this.pause = new QueuePause(this.state, index);
    this.takeoverEpoch = data.takeover && this.state.running ? this.state.runEpoch : undefined;
  }

  onKick(): void {
    libc.drainEventFd(this.kickFd);
    this.serve();
  }

  /** Stops serving; the backend and the mappings go once no request is in flight any more. */
  close(): void {
    this.closing = true;
    if (this.kickFdInstalled) this.device.setKickFd(this.index, -1);
    libc.closeFd(this.kickFd);
    this.dropQueue();
    this.inflight.close();
  }

  /**
   * With nothing in flight, a pause is acknowledged and retired mappings (and, when closing, the
   * backend) can go.
   */
  private settle(): void {
    if (this.inFlight > 0) return;
    this.pause.acknowledgeIdle();
    this.memory.release();
    if (this.closing && !this.closed) {
      this.closed = true;
      this.backend.close();
      this.onClosed!();
    }
  }

  /**
   * Applies what the control and main threads published: start, stop (reset), an IOTLB
   * invalidation, a pause or its end.
   */
  followControl(): void {
    const generation = this.state.iotlbGeneration;
    if (generation !== this.iotlbGeneration) {
      this.iotlbGeneration = generation;
      const lastAvail = this.queue?.lastAvailIdx;
      this.dropQueue();
      if (this.state.running && lastAvail !== undefined) this.attachQueue(lastAvail);
    }
    const epoch = this.state.runEpoch;
    if (epoch !== this.epoch) {
      this.epoch = epoch;
      this.dropQueue();
      if (!this.state.running) this.inflight.idle();
      else if (epoch === this.takeoverEpoch) this.resumeRun();
      else this.startRun();
      this.state.acknowledge(this.index, epoch);
      // The device's control messages are answered on one of the queue threads, whose reset
      // answer waits for this acknowledgement.
      libc.signalEventFd(this.data.controlWakeFd);
      // Kicks that came before the kick eventfd was installed are not repeated: look now.
      this.serve();
    }
    if (this.kickedWhilePaused && !this.pause.requested) {
      this.kickedWhilePaused = false;
      this.serve();
    }
    this.settle();
  }

  /** Forgets the rings and their mappings (they are mapped afresh when the queue attaches again). */
  private dropQueue(): void {
    this.queue = null;
    this.memory.clear();
    this.settle();
  }

  /** The driver started the queue: a new run, nothing in flight. */
  private startRun(): void {
    this.attachQueue(undefined);
    const queue = this.queue;
    if (!queue) return;
    try {
      this.inflight.start(queue.size, queue.usedIndex);
    } catch (error) {
      this.markBroken(error);
    }
  }

  /**
   * The queue of a device taken over: settles the in-flight log against the used ring, serves
   * again what the previous server took and did not return (oldest first; re-reading or
   * re-writing a buffer the driver does not touch until it is used is harmless), and goes on from
   * the first chain it did not take.
   */
  private resumeRun(): void {
    this.attachQueue(undefined);
    const queue = this.queue;
    if (!queue) return;
    try {
      const { lastAvailIdx, inFlight } = this.inflight.recover(queue);
      queue.resumeAt(lastAvailIdx);
      this.state.setLastAvailIdx(this.index, lastAvailIdx);
      threadLog.info('queue resumed from the in-flight log', {
        device: this.data.name,
        queue: this.index,
        usedIndex: queue.usedIndex,
        lastAvailIdx,
        inFlight: inFlight.length,
      });
      const startedAt = this.clock();
      for (const head of inFlight)
        this.complete(queue, head, this.handler.handle(queue.chainAt(head), startedAt));
      // The previous server may have died between returning chains and interrupting the driver.
      this.device.injectQueueIrq(this.index);
      this.timeFinished();
    } catch (error) {
      this.markBroken(error);
    }
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
          tracker: this.inflight,
          ...(lastAvailIdx === undefined ? {} : { lastAvailIdx }),
        },
      );
      if (!this.kickFdInstalled) {
        this.device.setKickFd(index, this.kickFd);
        this.kickFdInstalled = true;
      }
      threadLog.debug('queue started', { device: this.data.name, queue: index, size: info.num });
    } catch (error) {
      this.markBroken(error);
    }
  }

  /**
   * Takes and serves every available chain, unless the queue is paused (then later). A turn ends
   * after TURN_BYTES moved: the queue kicks itself and the thread's other queues are served
   * before it goes on, so a busy volume cannot starve the others sharing its thread.
   */
  private serve(): void {
    const queue = this.queue;
    if (!queue) return;
    if (this.pause.requested) {
      this.kickedWhilePaused = true;
      return;
    }
    try {
      queue.suppressKicks();
      let turnBytes = 0;
      do {
        let chain = queue.pop();
        const startedAt = chain ? this.clock() : 0;
        let bytesSinceInterrupt = 0;
        while (chain) {
          this.complete(queue, chain.head, this.handler.handle(chain, startedAt));
          const bytes = chainBytes(chain);
          bytesSinceInterrupt += bytes;
          turnBytes += bytes;
          if (turnBytes >= TURN_BYTES) break;
          if (bytesSinceInterrupt >= INTERRUPT_EVERY_BYTES) {
            bytesSinceInterrupt = 0;
            this.interruptIfWanted(queue);
          }
          chain = queue.pop();
        }
        this.state.setLastAvailIdx(this.index, queue.lastAvailIdx);
        this.interruptIfWanted(queue);
        this.timeFinished();
        if (turnBytes >= TURN_BYTES) {
          libc.signalEventFd(this.kickFd);
          return;
        }
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
    this.counters.inFlight = ++this.inFlight;
    const epoch = this.epoch;
    // One reaction per request (no then/catch/finally chain): a completion's wake-up runs them all.
    completion.then(
      (written) => this.completed(epoch, head, written),
      (error: unknown) => {
        this.markBroken(error);
        this.finished();
      },
    );
  }

  private completed(epoch: number, head: number, written: number): void {
    // After a reset the driver no longer waits for it; after an IOTLB invalidation the run goes on
    // with the rings mapped afresh.
    const current = this.queue;
    if (this.epoch === epoch && current) {
      try {
        current.pushUsed(head, written);
        this.interruptOnceSettled(current);
      } catch (error) {
        this.markBroken(error);
      }
    }
    this.finished();
  }

  /** A request in flight is over: returned, dropped after a reset, or its return broke the queue. */
  private finished(): void {
    this.timeFinished();
    this.counters.inFlight = --this.inFlight;
    this.settle();
  }

  /**
   * A batch's start, when requests are timed: one clock read for every chain the batch takes, and
   * one more when the driver has been told (`timeFinished`), so a request's time runs from the
   * batch taking it to the interrupt that tells the driver.
   */
  private clock(): number {
    return this.requestCounters ? performance.now() : 0;
  }

  private timeFinished(): void {
    this.requestCounters?.timeFinished(performance.now());
  }

  /**
   * One interrupt for every completion that settles in the same turn (a wake-up often collects
   * several): queued behind their callbacks, so the driver is told once, not once per request.
   */
  private interruptOnceSettled(queue: SplitQueue): void {
    if (this.interruptQueued) return;
    this.interruptQueued = true;
    queueMicrotask(() => {
      this.interruptQueued = false;
      if (this.queue === queue) this.interruptIfWanted(queue);
    });
  }

  private interruptIfWanted(queue: SplitQueue): void {
    if (queue.needsInterrupt()) this.device.injectQueueIrq(this.index);
  }

  private markBroken(error: unknown): void {
    threadLog.error('queue broken: no more requests are served on it until the driver resets the device', {
      device: this.data.name,
      queue: this.index,
      error: error instanceof Error ? error.message : String(error),
    });
    this.counters.queueBroken();
    this.queue = null;
  }
}

const data = workerData as ThreadData;
threadLog.setLevel(data.logLevel);
libc.nameThisThread('vduse-queue');
const servers = new Map<string, QueueServer[]>();
/** The devices whose control messages this thread answers (DeviceThreads picks one thread per device). */
const controls = new Map<string, ControlServer>();
/** Detached servers whose last requests are still in flight. */
const draining = new Set<QueueServer>();
const thread: EventThread = new EventThread(
  data.wakeFd,
  data.commands,
  (command) => {
    if (command.type === 'attach') {
      const server = new QueueServer(
        command.device,
        command.queue,
        thread,
        command.device.largeIoHelpers ? largeIo : undefined,
      );
      const list = servers.get(command.device.name) ?? [];
      list.push(server);
      servers.set(command.device.name, list);
      thread.watch(server.kickFd, () => server.onKick());
      server.followControl();
    } else if (command.type === 'attach-control') {
      const control = new ControlServer(command.device);
      controls.set(command.device.name, control);
      thread.watch(control.fd, () => control.onReadable());
      control.onReadable();
    } else if (command.type === 'detach') {
      const control = controls.get(command.name);
      if (control) {
        thread.unwatch(control.fd);
        control.close();
        controls.delete(command.name);
      }
      const detached = servers.get(command.name) ?? [];
      for (const server of detached) {
        thread.unwatch(server.kickFd);
        server.close();
        if (server.inFlight > 0) draining.add(server);
      }
      servers.delete(command.name);
      // The main thread closes the storage once this answers: no request of it may still be in flight.
      return Promise.all(detached.map((server) => server.whenClosed)).then(() => undefined);
    } else if (command.type === 'resize') {
      const control = controls.get(command.name);
      if (!control) throw new Error(`no device ${command.name}`);
      return { notified: control.resize(command.bytes) };
    }
    return undefined;
  },
  () => {
    for (const server of draining) if (server.inFlight === 0) draining.delete(server);
    for (const list of servers.values()) for (const server of list) server.followControl();
    // After the queues above: a reset of a device whose queues are all on this thread is answered
    // in the same wake-up as their acknowledgement.
    for (const control of controls.values()) control.settle();
  },
  () => {
    if (draining.size > 0) return true;
    for (const control of controls.values()) if (control.waiting) return true;
    for (const list of servers.values()) for (const server of list) if (server.inFlight > 0) return true;
    return false;
  },
);
/** Its helpers start at the first large request of any of this thread's file-backed queues. */
const largeIo = new LargeIoPool(thread);
parentPort!.postMessage({ type: 'ready' });
thread
  .run()
  .catch((error: unknown) => {
    threadLog.error('queue thread failed', { error: String(error) });
    process.exitCode = 1;
  })
  .finally(() => void largeIo.close());

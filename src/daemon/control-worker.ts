import { MessagePort, parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { log, setLogLevel } from '../log';
import * as libc from '../sys/libc';
import { VduseDevice } from '../vduse/device';
import { ControlRequest, DeviceStatus, RequestType, encodeResponse } from '../vduse/uapi';
import { encodeCapacity } from '../virtio/blk/config';
import { configOffset } from '../virtio/blk/spec';
import { SharedDeviceState } from './shared-state';
import { DeviceThreadData } from './worker-data';

/** How long a reset waits for queue threads to let go of the rings before answering anyway. */
const RESET_ACK_TIMEOUT_MS = 5000;
const IDLE_POLL_MS = 1000;

export type ControlCommand = { type: 'resize'; bytes: number; id: number };
export type ControlReply =
  { type: 'resized'; id: number; notified: boolean } | { type: 'failed'; id: number; error: string };

/**
 * Answers the kernel's control messages on a thread of its own, so they are served promptly
 * (the kernel gives up on a device after msg_timeout) whatever the main thread or the queues do.
 */
class ControlServer {
  private readonly state: SharedDeviceState;
  private readonly device: VduseDevice;
  private readonly poller: libc.PollSet;
  private status = 0;

  constructor(
    private readonly data: DeviceThreadData,
    private readonly commands: MessagePort,
  ) {
    this.state = new SharedDeviceState(data.state, data.geometry.queues);
    this.device = VduseDevice.attach(data.deviceFd);
    this.poller = new libc.PollSet([data.deviceFd, this.wakeFd]);
  }

  private get wakeFd(): number {
    return this.data.wakeFds[this.data.geometry.queues]!;
  }

  run(): void {
    let brokenReported = false;
    while (!this.state.stopRequested) {
      const [deviceEvents] = this.poller.wait(IDLE_POLL_MS);
      libc.drainEventFd(this.wakeFd);
      this.runCommands();
      if (deviceEvents! & libc.POLLERR && !brokenReported) {
        brokenReported = true;
        log.error('the kernel reports the VDUSE device broken', { device: this.data.name });
      }
      for (let request = this.device.readRequest(); request; request = this.device.readRequest()) {
        this.device.writeResponse(this.answer(request));
      }
    }
  }

  private answer(request: ControlRequest): Buffer {
    switch (request.type) {
      case RequestType.SetStatus:
        this.setStatus(request.status);
        return encodeResponse(request.id, true);
      case RequestType.GetVqState: {
        const ok = request.queue < this.data.geometry.queues;
        const availIndex = ok ? this.state.lastAvailIdx(request.queue) : 0;
        return encodeResponse(request.id, ok, { queue: request.queue, availIndex });
      }
      case RequestType.UpdateIotlb:
        this.state.bumpIotlbGeneration();
        this.wakeQueues();
        return encodeResponse(request.id, true);
      default:
        log.warn('unknown control message', { device: this.data.name, type: request.rawType });
        return encodeResponse(request.id, false);
    }
  }

  private setStatus(status: number): void {
    const wasRunning = (this.status & DeviceStatus.DriverOk) !== 0;
    const running = (status & DeviceStatus.DriverOk) !== 0;
    this.status = status;
    log.debug('device status', { device: this.data.name, status });
    if (running === wasRunning && status !== 0) return;
    const epoch = this.state.setRunning(running);
    this.wakeQueues();
    if (!running && !this.state.awaitAcknowledged(epoch, RESET_ACK_TIMEOUT_MS)) {
      log.warn('queue threads slow to stop on reset', { device: this.data.name });
    }
  }

  private runCommands(): void {
    for (
      let message = receiveMessageOnPort(this.commands);
      message;
      message = receiveMessageOnPort(this.commands)
    ) {
      const command = message.message as ControlCommand;
      try {
        this.state.capacityBytes = command.bytes;
        this.device.setConfig(
          configOffset.capacity,
          encodeCapacity(command.bytes, this.data.geometry.blockSize),
        );
        const notified = this.device.injectConfigIrq();
        this.commands.postMessage({ type: 'resized', id: command.id, notified } satisfies ControlReply);
      } catch (error) {
        this.commands.postMessage({
          type: 'failed',
          id: command.id,
          error: String(error),
        } satisfies ControlReply);
      }
    }
  }

  private wakeQueues(): void {
    for (let queue = 0; queue < this.data.geometry.queues; queue++)
      libc.signalEventFd(this.data.wakeFds[queue]!);
  }
}

const data = workerData as DeviceThreadData & { commands: MessagePort };
setLogLevel(data.logLevel);
const server = new ControlServer(data, data.commands);
parentPort!.postMessage({ type: 'ready' });
server.run();
parentPort!.postMessage({ type: 'stopped' });

import { threadLog } from './thread-log';
import * as libc from '../sys/libc';
import { VduseDevice } from '../vduse/device';
import { ControlRequest, DeviceStatus, RequestType, encodeResponse } from '../vduse/uapi';
import { encodeCapacity } from '../virtio/blk/config';
import { configOffset } from '../virtio/blk/spec';
import { SharedDeviceState } from './shared-state';
import { DeviceRegistration } from './worker-data';

/** How long a reset waits for the queues to let go of the rings before it is answered anyway. */
const RESET_ACK_TIMEOUT_MS = 5000;

interface PendingReset {
  requestId: number;
  epoch: number;
  deadline: number;
}

/**
 * Answers one device's control messages, on the queue thread that hosts it (queue-worker.ts):
 * every message as soon as it is read (the kernel gives up on a device after msg_timeout, 30 s; a
 * queue's turn lasts a few milliseconds), except a reset, answered once every queue thread of the
 * device has let go of the rings (`settle`, on each wake-up of the hosting thread): waiting for
 * that on the spot would stop the very thread that must let go of them.
 */
export class ControlServer {
  private readonly state: SharedDeviceState;
  private readonly device: VduseDevice;
  private status = 0;
  private pendingReset: PendingReset | undefined;

  constructor(private readonly data: DeviceRegistration) {
    this.state = new SharedDeviceState(data.state, data.geometry.queues);
    this.device = VduseDevice.attach(data.deviceFd);
    if (this.state.running) this.status = DeviceStatus.DriverOk;
  }

  get fd(): number {
    return this.data.deviceFd;
  }

  /** A reset waits for the queues: the hosting thread must keep looking (see settle). */
  get waiting(): boolean {
    return this.pendingReset !== undefined;
  }

  onReadable(): void {
    for (let request = this.device.readRequest(); request; request = this.device.readRequest()) {
      const response = this.answer(request);
      if (response) this.device.writeResponse(response);
    }
  }

  /** Answers a reset once every queue thread acknowledged it, or once it waited long enough. */
  settle(): void {
    const pending = this.pendingReset;
    if (!pending) return;
    const acknowledged = this.state.acknowledged(pending.epoch);
    if (!acknowledged && Date.now() < pending.deadline) return;
    if (!acknowledged) threadLog.warn('queue threads slow to stop on reset', { device: this.data.name });
    this.answerReset();
  }

  /** The device leaves this thread: a reset still waiting is answered now, its queues detach as well. */
  close(): void {
    if (this.pendingReset) this.answerReset();
  }

  resize(bytes: number): boolean {
    this.state.capacityBytes = bytes;
    this.device.setConfig(configOffset.capacity, encodeCapacity(bytes, this.data.geometry.blockSize));
    return this.device.injectConfigIrq();
  }

  private answerReset(): void {
    const { requestId } = this.pendingReset!;
    this.pendingReset = undefined;
    this.device.writeResponse(encodeResponse(requestId, true));
  }

  /** The response to `request`, or undefined for a reset, answered later (settle). */
  private answer(request: ControlRequest): Buffer | undefined {
    switch (request.type) {
      case RequestType.SetStatus:
        return this.setStatus(request.id, request.status);
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
        threadLog.warn('unknown control message', { device: this.data.name, type: request.rawType });
        return encodeResponse(request.id, false);
    }
  }

  private setStatus(requestId: number, status: number): Buffer | undefined {
    const wasRunning = (this.status & DeviceStatus.DriverOk) !== 0;
    const running = (status & DeviceStatus.DriverOk) !== 0;
    this.status = status;
    threadLog.debug('device status', { device: this.data.name, status });
    if (running === wasRunning && status !== 0) return encodeResponse(requestId, true);
    const epoch = this.state.setRunning(running);
    this.wakeQueues();
    if (running) return encodeResponse(requestId, true);
    this.pendingReset = { requestId, epoch, deadline: Date.now() + RESET_ACK_TIMEOUT_MS };
    this.settle();
    return undefined;
  }

  private wakeQueues(): void {
    for (const fd of new Set(this.data.queueWakeFds)) libc.signalEventFd(fd);
  }
}

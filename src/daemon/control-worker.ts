import { parentPort, workerData } from 'node:worker_threads';
import { threadLog } from './thread-log';
import * as libc from '../sys/libc';
import { VduseDevice } from '../vduse/device';
import { ControlRequest, DeviceStatus, RequestType, encodeResponse } from '../vduse/uapi';
import { encodeCapacity } from '../virtio/blk/config';
import { configOffset } from '../virtio/blk/spec';
import { SharedDeviceState } from './shared-state';
import { EventThread } from './event-thread';
import { DeviceRegistration, ThreadData } from './worker-data';

/** How long a reset waits for queue threads to let go of the rings before answering anyway. */
const RESET_ACK_TIMEOUT_MS = 5000;

/**
 * Answers one device's control messages. All devices' control servers share one thread, so
 * messages are served promptly (the kernel gives up on a device after msg_timeout) whatever the
 * main thread or the queues do.
 */
class ControlServer {
  private readonly state: SharedDeviceState;
  private readonly device: VduseDevice;
  private status = 0;
  private brokenReported = false;

  constructor(private readonly data: DeviceRegistration) {
    this.state = new SharedDeviceState(data.state, data.geometry.queues);
    this.device = VduseDevice.attach(data.deviceFd);
    if (this.state.running) this.status = DeviceStatus.DriverOk;
  }

  get fd(): number {
    return this.data.deviceFd;
  }

  onReadable(): void {
    for (let request = this.device.readRequest(); request; request = this.device.readRequest()) {
      this.device.writeResponse(this.answer(request));
    }
  }

  /** poll reported POLLERR: the kernel marked the device broken (a message timed out). */
  onError(): void {
    if (this.brokenReported) return;
    this.brokenReported = true;
    threadLog.error('the kernel reports the VDUSE device broken', { device: this.data.name });
  }

  resize(bytes: number): boolean {
    this.state.capacityBytes = bytes;
    this.device.setConfig(configOffset.capacity, encodeCapacity(bytes, this.data.geometry.blockSize));
    return this.device.injectConfigIrq();
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
        threadLog.warn('unknown control message', { device: this.data.name, type: request.rawType });
        return encodeResponse(request.id, false);
    }
  }

  private setStatus(status: number): void {
    const wasRunning = (this.status & DeviceStatus.DriverOk) !== 0;
    const running = (status & DeviceStatus.DriverOk) !== 0;
    this.status = status;
    threadLog.debug('device status', { device: this.data.name, status });
    if (running === wasRunning && status !== 0) return;
    const epoch = this.state.setRunning(running);
    this.wakeQueues();
    if (!running && !this.state.awaitAcknowledged(epoch, RESET_ACK_TIMEOUT_MS)) {
      threadLog.warn('queue threads slow to stop on reset', { device: this.data.name });
    }
  }

  private wakeQueues(): void {
    for (const fd of new Set(this.data.queueWakeFds)) libc.signalEventFd(fd);
  }
}

const data = workerData as ThreadData;
threadLog.setLevel(data.logLevel);
libc.nameThisThread('vduse-control');
const servers = new Map<string, ControlServer>();
const thread: EventThread = new EventThread(
  data.wakeFd,
  data.commands,
  (command) => {
    if (command.type === 'attach') {
      const server = new ControlServer(command.device);
      servers.set(command.device.name, server);
      thread.watch(command.device.deviceFd, () => server.onReadable());
      server.onReadable();
    } else if (command.type === 'detach') {
      const server = servers.get(command.name);
      if (server) thread.unwatch(server.fd);
      servers.delete(command.name);
    } else if (command.type === 'resize') {
      const server = servers.get(command.name);
      if (!server) throw new Error(`no device ${command.name}`);
      return { notified: server.resize(command.bytes) };
    }
    return undefined;
  },
  () => undefined,
  () => false,
);
parentPort!.postMessage({ type: 'ready' });
void thread.run();

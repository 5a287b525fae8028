import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { MessageChannel, MessagePort, Worker } from 'node:worker_threads';
import { log } from '../log';
import * as libc from '../sys/libc';
import { placeQueues } from './queue-placement';
import { ThreadLogRecord } from './thread-log';
import { DeviceRegistration, ThreadCommand, ThreadData, ThreadEvent, ThreadReply } from './worker-data';

const EXIT_TIMEOUT_MS = 10_000;
const YOUNG_GENERATION_MB = 4;

type CommandBody<T = ThreadCommand> = T extends ThreadCommand ? Omit<T, 'id'> : never;

/** Writes a device thread's log record with this process's logger. */
export function relayThreadLog(record: ThreadLogRecord): void {
  log.log(record.level, record.message, record.meta);
}

/** One device thread as the main thread sees it: a worker, its command port and its wake eventfd. */
class DeviceThread {
  readonly worker: Worker;
  readonly wakeFd = libc.createEventFd();
  private readonly port: MessagePort;
  private readonly pending = new Map<number, (reply: ThreadReply) => void>();
  private nextId = 1;
  readonly ready: Promise<void>;
  /** Queues this thread serves. */
  load = 0;

  constructor(script: string, logLevel: string) {
    const channel = new MessageChannel();
    this.port = channel.port1;
    const data: ThreadData = { wakeFd: this.wakeFd, commands: channel.port2, logLevel };
    this.worker = new Worker(join(__dirname, script), {
      workerData: data,
      transferList: [channel.port2],
      // Device threads allocate little per request; a small young generation keeps many devices small.
      resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
    });
    this.port.on('message', (reply: ThreadReply) => {
      this.pending.get(reply.id)?.(reply);
      this.pending.delete(reply.id);
      if (this.pending.size === 0) this.port.unref();
    });
    this.port.unref();
    this.worker.on('error', (error) => log.error('device thread failed', { script, error: String(error) }));
    this.ready = new Promise((resolve, reject) => {
      this.worker.on('message', (event: ThreadEvent) => {
        if (event.type === 'ready') resolve();
        else relayThreadLog(event);
      });
      this.worker.once('exit', (code) => reject(new Error(`${script} exited with ${code} while starting`)));
    });
  }

  async call(body: CommandBody): Promise<ThreadReply & { type: 'done' }> {
    await this.ready;
    const id = this.nextId++;
    const reply = new Promise<ThreadReply>((resolve) => this.pending.set(id, resolve));
    this.port.ref();
    this.port.postMessage({ ...body, id } as ThreadCommand);
    libc.signalEventFd(this.wakeFd);
    const answer = await reply;
    if (answer.type === 'failed') throw new Error(answer.error);
    return answer;
  }

  async exit(): Promise<void> {
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    const timer = setTimeout(() => void this.worker.terminate(), EXIT_TIMEOUT_MS);
    await this.call({ type: 'exit' }).catch(() => undefined);
    await exited;
    clearTimeout(timer);
    this.port.close();
    libc.closeFd(this.wakeFd);
  }
}

/**
 * The threads that serve every device of this process: a pool of queue threads (up to one per
 * CPU), each serving the queues given to it, one of which also answers each device's control
 * messages. Sharing them keeps a process with many devices small; spreading one device's queues
 * keeps them parallel.
 */
export class DeviceThreads {
  private readonly queueThreads: DeviceThread[] = [];
  private readonly placement = new Map<string, { queues: DeviceThread[]; control: DeviceThread }>();
  /** Detaches under way: the threads they talk to must outlive them. */
  private detaching = 0;
  /** A long-lived daemon keeps its threads when its last device goes (see keepWarm). */
  private keptWarm = false;

  constructor(
    private readonly logLevel: string,
    private readonly maxQueueThreads = availableParallelism(),
  ) {}

  /**
   * Starts serving a device: its queues go to the least loaded queue threads, or all to the least
   * loaded one when they must share a thread; its control messages to the first queue thread.
   */
  async attach(
    device: Omit<DeviceRegistration, 'queueWakeFds' | 'controlWakeFd'>,
    oneThread: boolean,
  ): Promise<void> {
    const { queues } = device.geometry;
    const hosts = placeQueues(this.queueThreads, queues, {
      oneThread,
      maxThreads: this.maxQueueThreads,
      start: () => new DeviceThread('queue-worker.js', this.logLevel),
    });
    // Control messages are few and answered between two turns of a queue (a few ms at most).
    const control = this.queueThreads[0]!;
    this.placement.set(device.name, { queues: hosts, control });
    const registration: DeviceRegistration = {
      ...device,
      queueWakeFds: hosts.map((host) => host.wakeFd),
      controlWakeFd: control.wakeFd,
    };
    await Promise.all(hosts.map((host, queue) => host.call({ type: 'attach', device: registration, queue })));
    // Only now: the device's I/O resumes once its queues are attached (the kernel's control
    // messages wait in the device fd meanwhile).
    await control.call({ type: 'attach-control', device: registration });
  }

  /**
   * Starts the threads `queues` queues of a device will need before there is a device (at most
   * one per CPU), so a standby server takes over without waiting for threads to load.
   */
  async warm(queues: number): Promise<void> {
    while (this.queueThreads.length < Math.min(Math.max(1, queues), this.maxQueueThreads)) {
      this.queueThreads.push(new DeviceThread('queue-worker.js', this.logLevel));
    }
    await Promise.all(this.queueThreads.map((thread) => thread.ready));
  }

  /**
   * Starts the threads as warm does and keeps them past the last device, so a long-lived daemon's
   * next add never waits for threads to load (0.5-1.3 s under emulation, for every add of a burst).
   */
  async keepWarm(queues: number): Promise<void> {
    this.keptWarm = true;
    await this.warm(queues);
  }

  /**
   * Stops serving a device; afterwards no thread touches its fd, rings or image. Unless kept warm,
   * the threads end with the last device, once no other detach still talks to them.
   */
  async detach(name: string): Promise<void> {
    const placed = this.placement.get(name);
    this.placement.delete(name);
    this.detaching++;
    try {
      if (placed) {
        // Its control messages first (a reset still waiting is answered), then its queues.
        await placed.control.call({ type: 'detach', name });
        const others = new Set(placed.queues.filter((host) => host !== placed.control));
        await Promise.all([...others].map((host) => host.call({ type: 'detach', name })));
        for (const host of placed.queues) host.load--;
      }
    } finally {
      this.detaching--;
    }
    if (this.placement.size === 0 && this.detaching === 0 && !this.keptWarm) await this.shutdown();
  }

  /** Makes the threads serving `name`'s queues look at its shared state now. */
  wakeQueues(name: string): void {
    for (const host of new Set(this.placement.get(name)?.queues)) libc.signalEventFd(host.wakeFd);
  }

  async resize(name: string, bytes: number): Promise<boolean> {
    const placed = this.placement.get(name);
    if (!placed) throw new Error(`no device ${name}`);
    const reply = await placed.control.call({ type: 'resize', name, bytes });
    return reply.notified ?? false;
  }

  /** With no device left, the threads end, so a process that served its last device can exit. */
  private async shutdown(): Promise<void> {
    const threads = [...this.queueThreads];
    this.queueThreads.length = 0;
    await Promise.all(threads.map((thread) => thread.exit()));
  }
}

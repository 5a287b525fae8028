/// <reference lib="es2024.sharedmemory" />

/**
 * State the threads serving one device share through a SharedArrayBuffer: its control server
 * publishes the driver's status and IOTLB invalidations, the main thread pauses, queue threads
 * publish their progress.
 */
const RUN_EPOCH = 0;
const RUNNING = 1;
const IOTLB_GENERATION = 2;
/** Odd while the queues are paused; each pause and each resume adds one. */
const PAUSE_GENERATION = 3;
const QUEUE_BASE = 8;
const QUEUE_STRIDE = 4;
const QUEUE_ACK = 0;
const QUEUE_LAST_AVAIL = 1;
const QUEUE_PAUSE_ACK = 2;

export class SharedDeviceState {
  private readonly cells: Int32Array;
  private readonly capacity: Float64Array;

  constructor(
    readonly buffer: SharedArrayBuffer,
    readonly queueCount: number,
  ) {
    const cellCount = QUEUE_BASE + QUEUE_STRIDE * queueCount;
    this.cells = new Int32Array(buffer, 0, cellCount);
    this.capacity = new Float64Array(buffer, cellCount * 4 + ((cellCount * 4) % 8), 1);
  }

  static create(queueCount: number): SharedDeviceState {
    const cellBytes = (QUEUE_BASE + QUEUE_STRIDE * queueCount) * 4;
    return new SharedDeviceState(new SharedArrayBuffer(cellBytes + (cellBytes % 8) + 8), queueCount);
  }

  get runEpoch(): number {
    return Atomics.load(this.cells, RUN_EPOCH);
  }

  get running(): boolean {
    return Atomics.load(this.cells, RUNNING) === 1;
  }

  /** Starts or stops the queues; returns the new epoch queue threads acknowledge. */
  setRunning(running: boolean): number {
    Atomics.store(this.cells, RUNNING, running ? 1 : 0);
    return Atomics.add(this.cells, RUN_EPOCH, 1) + 1;
  }

  get iotlbGeneration(): number {
    return Atomics.load(this.cells, IOTLB_GENERATION);
  }

  bumpIotlbGeneration(): void {
    Atomics.add(this.cells, IOTLB_GENERATION, 1);
  }

  get capacityBytes(): number {
    return this.capacity[0]!;
  }

  set capacityBytes(bytes: number) {
    this.capacity[0] = bytes;
  }

  acknowledge(queue: number, epoch: number): void {
    Atomics.store(this.cells, this.queueCell(queue, QUEUE_ACK), epoch);
  }

  /** Whether every queue thread has seen `epoch`. */
  acknowledged(epoch: number): boolean {
    for (let queue = 0; queue < this.queueCount; queue++) {
      if (Atomics.load(this.cells, this.queueCell(queue, QUEUE_ACK)) < epoch) return false;
    }
    return true;
  }

  /** The generation of the pause in force, or 0 when the queues run. */
  get pauseGeneration(): number {
    const generation = Atomics.load(this.cells, PAUSE_GENERATION);
    return generation % 2 === 1 ? generation : 0;
  }

  /**
   * Asks the queues to stop taking chains; returns the generation they acknowledge once idle.
   * Only the main thread pauses and resumes, one pause at a time.
   */
  beginPause(): number {
    const current = Atomics.load(this.cells, PAUSE_GENERATION);
    if (current % 2 === 1) throw new Error('the queues are already paused');
    Atomics.store(this.cells, PAUSE_GENERATION, current + 1);
    return current + 1;
  }

  endPause(): void {
    const current = Atomics.load(this.cells, PAUSE_GENERATION);
    if (current % 2 === 1) Atomics.store(this.cells, PAUSE_GENERATION, current + 1);
  }

  /** A queue took no chain since pause `generation` began and has none in flight. */
  acknowledgePause(queue: number, generation: number): void {
    const cell = this.queueCell(queue, QUEUE_PAUSE_ACK);
    Atomics.store(this.cells, cell, generation);
    Atomics.notify(this.cells, cell);
  }

  /**
   * Waits, without blocking the thread, until every queue acknowledged pause `generation`;
   * returns the queues that did not in time.
   */
  async awaitPaused(generation: number, timeoutMs: number): Promise<number[]> {
    const deadline = Date.now() + timeoutMs;
    const late: number[] = [];
    for (let queue = 0; queue < this.queueCount; queue++) {
      const cell = this.queueCell(queue, QUEUE_PAUSE_ACK);
      for (;;) {
        const seen = Atomics.load(this.cells, cell);
        if (seen >= generation) break;
        const left = deadline - Date.now();
        if (left <= 0) {
          late.push(queue);
          break;
        }
        const wait = Atomics.waitAsync(this.cells, cell, seen, left);
        if (wait.async) await wait.value;
      }
    }
    return late;
  }

  lastAvailIdx(queue: number): number {
    return Atomics.load(this.cells, this.queueCell(queue, QUEUE_LAST_AVAIL));
  }

  setLastAvailIdx(queue: number, index: number): void {
    Atomics.store(this.cells, this.queueCell(queue, QUEUE_LAST_AVAIL), index);
  }

  private queueCell(queue: number, field: number): number {
    return QUEUE_BASE + QUEUE_STRIDE * queue + field;
  }
}

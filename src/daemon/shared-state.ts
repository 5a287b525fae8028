/**
 * State the threads serving one device share through a SharedArrayBuffer: the control thread
 * publishes the driver's status and IOTLB invalidations, queue threads publish their progress.
 */
const RUN_EPOCH = 0;
const RUNNING = 1;
const IOTLB_GENERATION = 2;
const QUEUE_BASE = 8;
const QUEUE_STRIDE = 4;
const QUEUE_ACK = 0;
const QUEUE_LAST_AVAIL = 1;

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
    Atomics.notify(this.cells, this.queueCell(queue, QUEUE_ACK));
  }

  /** Waits until every queue thread has seen `epoch`; false on timeout. */
  awaitAcknowledged(epoch: number, timeoutMs: number): boolean {
    const deadline = Date.now() + timeoutMs;
    for (let queue = 0; queue < this.queueCount; queue++) {
      const cell = this.queueCell(queue, QUEUE_ACK);
      for (;;) {
        const seen = Atomics.load(this.cells, cell);
        if (seen >= epoch) break;
        const left = deadline - Date.now();
        if (left <= 0) return false;
        Atomics.wait(this.cells, cell, seen, left);
      }
    }
    return true;
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

/// <reference lib="es2024.sharedmemory" />
import { RequestObserver } from '../virtio/blk/request-handler';
import { BlkRequestType } from '../virtio/blk/spec';

/** Kinds of request a device's counters keep apart (the virtio-blk request types; GET_ID and the unknown are "other"). */
export const IO_OPS = ['read', 'write', 'flush', 'discard', 'write_zeroes', 'other'] as const;
export type IoOp = (typeof IO_OPS)[number];

/** Directions whose request latency is kept as a histogram. */
export const LATENCY_DIRECTIONS = ['read', 'write'] as const;

/** Upper bounds of the latency buckets, in seconds (the last bucket, +Inf, follows). */
export const LATENCY_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10,
];

const OPS = IO_OPS.length;
const REQUESTS = 0;
const BYTES = REQUESTS + OPS;
const ERRORS = BYTES + OPS;
const LATENCY = ERRORS + OPS;
/** Per direction: one count per bucket (+Inf included), then the sum of seconds. */
const LATENCY_STRIDE = LATENCY_BUCKETS.length + 2;
const IN_FLIGHT = LATENCY + LATENCY_DIRECTIONS.length * LATENCY_STRIDE;
const NO_SPACE = IN_FLIGHT + 1;
const QUEUE_BREAKS = NO_SPACE + 1;
const QUEUE_CELLS = QUEUE_BREAKS + 1;

export interface LatencyTotals {
  /** Requests at or under each bucket's bound, cumulative, +Inf last. */
  buckets: number[];
  sum: number;
  count: number;
}

export interface IoTotals {
  requests: Record<IoOp, number>;
  bytes: Record<IoOp, number>;
  errors: Record<IoOp, number>;
  latency: Record<(typeof LATENCY_DIRECTIONS)[number], LatencyTotals>;
  inFlight: number;
  /** Failed requests (among `errors`) whose storage had no space left (ENOSPC, EDQUOT). */
  noSpace: number;
  /** Times a queue stopped serving on a ring the driver broke (until the driver resets the device). */
  queueBreaks: number;
}

/**
 * A device's request counters, in a SharedArrayBuffer the queue threads write and the main thread
 * reads when metrics are scraped. Each queue has cells of its own, written by its thread alone, so
 * counting is a plain add on the hot path; the reader sums the queues.
 */
export class IoCounters {
  private readonly cells: Float64Array;

  constructor(
    readonly buffer: SharedArrayBuffer,
    readonly queueCount: number,
  ) {
    this.cells = new Float64Array(buffer, 0, QUEUE_CELLS * queueCount);
  }

  static create(queueCount: number): IoCounters {
    return new IoCounters(new SharedArrayBuffer(QUEUE_CELLS * queueCount * 8), queueCount);
  }

  /** The cells of one queue, for its thread. */
  queue(index: number): QueueIoCounters {
    if (!Number.isInteger(index) || index < 0 || index >= this.queueCount)
      throw new RangeError(`queue ${index} of ${this.queueCount}`);
    return new QueueIoCounters(this.cells.subarray(index * QUEUE_CELLS, (index + 1) * QUEUE_CELLS));
  }

  totals(): IoTotals {
    const sum = (cell: number): number => {
      let total = 0;
      for (let queue = 0; queue < this.queueCount; queue++) total += this.cells[queue * QUEUE_CELLS + cell]!;
      return total;
    };
    const perOp = (base: number): Record<IoOp, number> =>
      Object.fromEntries(IO_OPS.map((op, index) => [op, sum(base + index)])) as Record<IoOp, number>;
    const latency = (direction: number): LatencyTotals => {
      const base = LATENCY + direction * LATENCY_STRIDE;
      const buckets: number[] = [];
      let cumulative = 0;
      for (let bucket = 0; bucket <= LATENCY_BUCKETS.length; bucket++) {
        cumulative += sum(base + bucket);
        buckets.push(cumulative);
      }
      return { buckets, sum: sum(base + LATENCY_BUCKETS.length + 1), count: cumulative };
    };
    return {
      requests: perOp(REQUESTS),
      bytes: perOp(BYTES),
      errors: perOp(ERRORS),
      latency: { read: latency(0), write: latency(1) },
      inFlight: sum(IN_FLIGHT),
      noSpace: sum(NO_SPACE),
      queueBreaks: sum(QUEUE_BREAKS),
    };
  }
}

/** The op index (in IO_OPS) of each virtio-blk request type counted apart, by type; the rest are "other". */
const OTHER = IO_OPS.indexOf('other');
const OP_OF_TYPE: readonly number[] = (() => {
  const ops: number[] = [];
  const counted: Array<[BlkRequestType, IoOp]> = [
    [BlkRequestType.In, 'read'],
    [BlkRequestType.Out, 'write'],
    [BlkRequestType.Flush, 'flush'],
    [BlkRequestType.Discard, 'discard'],
    [BlkRequestType.WriteZeroes, 'write_zeroes'],
  ];
  for (const [type, op] of counted) ops[type] = IO_OPS.indexOf(op);
  return Array.from(ops, (op) => op ?? OTHER);
})();

/** Requests a queue holds untimed at most: a longer batch is timed in parts (one clock read each). */
const UNTIMED_CAPACITY = 256;
const BUCKET_BOUNDS = Float64Array.from(LATENCY_BUCKETS);
const BUCKET_COUNT = LATENCY_BUCKETS.length;

/**
 * One queue's counters: written by its thread only. Requests are counted as they finish; reads and
 * writes are timed in batches (`timeFinished`), so the clock is read once per batch rather than per
 * request: a clock read costs about 1.3 us in an emulated guest, as much as the rest of the counting.
 */
export class QueueIoCounters implements RequestObserver {
  /** Reads and writes finished and not yet timed (their op and start), in typed arrays: no garbage per batch. */
  private readonly untimedOps = new Uint8Array(UNTIMED_CAPACITY);
  private readonly untimedStarts = new Float64Array(UNTIMED_CAPACITY);
  private untimed = 0;

  constructor(private readonly cells: Float64Array) {}

  finished(type: number, dataBytes: number, ok: boolean, startedAt: number): void {
    const cells = this.cells;
    const op = OP_OF_TYPE[type] ?? OTHER;
    cells[REQUESTS + op]! += 1;
    if (ok) cells[BYTES + op]! += dataBytes;
    else cells[ERRORS + op]! += 1;
    // Reads and writes (the first two ops, as the two latency directions) are timed.
    if (op >= LATENCY_DIRECTIONS.length) return;
    if (this.untimed === UNTIMED_CAPACITY) this.timeFinished(performance.now());
    this.untimedOps[this.untimed] = op;
    this.untimedStarts[this.untimed++] = startedAt;
  }

  /**
   * Times the reads and writes finished since the last call as completed at `now` (a
   * performance.now() reading, like their starts): the queue calls it when it has told the driver.
   */
  timeFinished(now: number): void {
    const cells = this.cells;
    for (let i = 0; i < this.untimed; i++) {
      const seconds = (now - this.untimedStarts[i]!) / 1000;
      const base = LATENCY + this.untimedOps[i]! * LATENCY_STRIDE;
      let bucket = 0;
      while (bucket < BUCKET_COUNT && seconds > BUCKET_BOUNDS[bucket]!) bucket++;
      cells[base + bucket]! += 1;
      cells[base + BUCKET_COUNT + 1]! += seconds;
    }
    this.untimed = 0;
  }

  set inFlight(requests: number) {
    this.cells[IN_FLIGHT] = requests;
  }

  /** A request failed for want of space in the storage (counted in `finished` as an error too). */
  noSpace(): void {
    this.cells[NO_SPACE]! += 1;
  }

  queueBroken(): void {
    this.cells[QUEUE_BREAKS]! += 1;
  }
}

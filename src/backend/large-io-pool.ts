import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { SysError } from '../sys/errors';
import * as libc from '../sys/libc';
import {
  CELLS_BYTES,
  JobKind,
  LargeIoWorkerData,
  MAX_SPANS,
  NUMBERS_BYTES,
  SLEEPERS,
  SLOTS,
  STOP,
  SUBMISSIONS,
  SlotState,
  slotCell,
  slotNumber,
} from './large-io-layout';
import { FdWatcher } from './types';
import { Span } from './vector-io';

/** Requests of at least this many bytes go to the helpers; smaller ones cost less done inline. */
export const LARGE_IO_BYTES = 128 * 1024;
/** Helper threads per queue thread. */
const HELPERS = 2;

interface Waiter {
  resolve: (moved: number) => void;
  reject: (error: Error) => void;
  what: string;
}

/**
 * A queue thread's helpers for large reads and writes of image files (large-io-worker.ts): a
 * request handed over here lets the queue thread go on with the next one, so the requests of a
 * batch are transferred in parallel, as a C server's thread pool or io_uring would. Started at the
 * first large request; done jobs are collected through an eventfd the thread's poll loop watches.
 */
export class LargeIoPool {
  private readonly cells = new Int32Array(new SharedArrayBuffer(CELLS_BYTES));
  private readonly numbers = new Float64Array(new SharedArrayBuffer(NUMBERS_BYTES));
  private readonly waiters = new Map<number, Waiter>();
  private doneFd = -1;
  private helpersAlive = 0;
  /** Settle as the helpers end. */
  private readonly helperExits: Array<Promise<void>> = [];

  constructor(private readonly watcher: FdWatcher) {}

  /**
   * Hands a transfer to a helper: resolves with what transferSpans returns (-1 when everything
   * moved, else the bytes moved before the end of the file), rejects with its SysError. Null when
   * it is better done inline (too many spans, every slot taken).
   */
  submit(
    kind: JobKind,
    fd: number,
    offset: number,
    spans: readonly Span[],
    what: string,
  ): Promise<number> | null {
    if (spans.length > MAX_SPANS || (this.doneFd >= 0 && this.helpersAlive === 0)) return null;
    const slot = this.freeSlot();
    if (slot < 0) return null;
    this.start();
    const { cells, numbers } = this;
    cells[slotCell.kind(slot)] = kind;
    cells[slotCell.fd(slot)] = fd;
    cells[slotCell.spans(slot)] = spans.length;
    numbers[slotNumber.offset(slot)] = offset;
    spans.forEach((span, index) => {
      const at = slotNumber.span(slot, index);
      numbers[at] = span.address;
      numbers[at + 1] = span.length;
    });
    const done = new Promise<number>((resolve, reject) => this.waiters.set(slot, { resolve, reject, what }));
    Atomics.store(cells, slotCell.state(slot), SlotState.Submitted);
    Atomics.add(cells, SUBMISSIONS, 1);
    // A helper awake takes the job when it looks again (it sees SUBMISSIONS changed): no wake-up.
    if (Atomics.load(cells, SLEEPERS) > 0) Atomics.notify(cells, SUBMISSIONS, 1);
    return done;
  }

  /**
   * Ends the helpers once the jobs under way are done (the caller waits for its requests first);
   * settles when they have ended.
   */
  async close(): Promise<void> {
    if (this.doneFd < 0) return;
    Atomics.store(this.cells, STOP, 1);
    Atomics.add(this.cells, SUBMISSIONS, 1);
    Atomics.notify(this.cells, SUBMISSIONS);
    this.watcher.unwatch(this.doneFd);
    libc.closeFd(this.doneFd);
    this.doneFd = -1;
    await Promise.all(this.helperExits);
  }

  private freeSlot(): number {
    for (let slot = 0; slot < SLOTS; slot++)
      if (!this.waiters.has(slot) && Atomics.load(this.cells, slotCell.state(slot)) === SlotState.Free)
        return slot;
    return -1;
  }

  private start(): void {
    if (this.doneFd >= 0) return;
    this.doneFd = libc.createEventFd();
    const data: LargeIoWorkerData = {
      cells: this.cells.buffer as SharedArrayBuffer,
      numbers: this.numbers.buffer as SharedArrayBuffer,
      doneFd: this.doneFd,
    };
    for (let index = 0; index < HELPERS; index++) {
      const helper = new Worker(join(__dirname, 'large-io-worker.js'), {
        workerData: data,
        resourceLimits: { maxYoungGenerationSizeMb: 4 },
      });
      // A helper never keeps its thread alive: the queue thread ends when its work is done.
      helper.unref();
      helper.on('error', () => undefined);
      helper.once('exit', () => this.helperExited());
      this.helperExits.push(new Promise((resolve) => helper.once('exit', () => resolve())));
      this.helpersAlive++;
    }
    this.watcher.watch(this.doneFd, () => this.collect());
  }

  /**
   * A helper ended without being asked (a bug, or memory exhausted): once none is left, the jobs
   * not done never will be, so their requests fail, and later ones are done inline.
   */
  private helperExited(): void {
    if (--this.helpersAlive > 0 || Atomics.load(this.cells, STOP) !== 0) return;
    for (const [slot, waiter] of this.waiters) {
      if (Atomics.load(this.cells, slotCell.state(slot)) === SlotState.Done) continue;
      this.waiters.delete(slot);
      waiter.reject(new Error(`${waiter.what}: the large-I/O helper threads exited`));
    }
  }

  private collect(): void {
    libc.drainEventFd(this.doneFd);
    for (const [slot, waiter] of this.waiters) {
      if (Atomics.load(this.cells, slotCell.state(slot)) !== SlotState.Done) continue;
      const errno = this.cells[slotCell.errno(slot)]!;
      const moved = this.numbers[slotNumber.result(slot)]!;
      const offset = this.numbers[slotNumber.offset(slot)]!;
      this.waiters.delete(slot);
      Atomics.store(this.cells, slotCell.state(slot), SlotState.Free);
      if (errno !== 0) waiter.reject(new SysError(`${waiter.what} at ${offset}`, errno));
      else waiter.resolve(moved);
    }
  }
}

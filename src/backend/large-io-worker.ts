import { workerData } from 'node:worker_threads';
import * as libc from '../sys/libc';
import {
  JobKind,
  LargeIoWorkerData,
  MAX_SPANS,
  SLEEPERS,
  SLOTS,
  STOP,
  SUBMISSIONS,
  SlotState,
  slotCell,
  slotNumber,
} from './large-io-layout';
import { IovecTable, transferSpans } from './vector-io';

/*
 * A large-I/O helper thread: takes submitted jobs (a read or write of a file at an offset, from
 * and into guest buffers given by address), runs them with preadv/pwritev, and signals the queue
 * thread's eventfd. Several helpers serve one queue thread, so a batch of large requests is
 * transferred in parallel rather than one after another.
 */
const { cells: cellsBuffer, numbers: numbersBuffer, doneFd } = workerData as LargeIoWorkerData;
libc.nameThisThread('vduse-large-io');
const cells = new Int32Array(cellsBuffer);
const numbers = new Float64Array(numbersBuffer);
const table = new IovecTable();
/** Reused for every job: a job's spans are the first of these. */
const spans = Array.from({ length: MAX_SPANS }, () => ({ address: 0, length: 0 }));

/** The job's spans, copied out of shared memory; returns how many. */
function loadSpans(slot: number): number {
  const count = cells[slotCell.spans(slot)]!;
  for (let index = 0; index < count; index++) {
    const at = slotNumber.span(slot, index);
    const span = spans[index]!;
    span.address = numbers[at]!;
    span.length = numbers[at + 1]!;
  }
  return count;
}

function run(slot: number): void {
  const read = cells[slotCell.kind(slot)] === JobKind.Read;
  try {
    const moved = transferSpans(
      cells[slotCell.fd(slot)]!,
      table,
      spans,
      loadSpans(slot),
      numbers[slotNumber.offset(slot)]!,
      read ? libc.raw.preadvAddr : libc.raw.pwritevAddr,
      read ? 'preadv' : 'pwritev',
    );
    numbers[slotNumber.result(slot)] = moved;
    cells[slotCell.errno(slot)] = 0;
  } catch (error) {
    cells[slotCell.errno(slot)] = (error as { errno?: number }).errno ?? 5; /* EIO */
  }
  Atomics.store(cells, slotCell.state(slot), SlotState.Done);
  libc.signalEventFd(doneFd);
}

for (;;) {
  const seen = Atomics.load(cells, SUBMISSIONS);
  if (Atomics.load(cells, STOP) !== 0) break;
  let ran = false;
  for (let slot = 0; slot < SLOTS; slot++) {
    const state = slotCell.state(slot);
    if (Atomics.compareExchange(cells, state, SlotState.Submitted, SlotState.Running) !== SlotState.Submitted)
      continue;
    run(slot);
    ran = true;
  }
  if (ran) continue;
  Atomics.add(cells, SLEEPERS, 1);
  Atomics.wait(cells, SUBMISSIONS, seen);
  Atomics.sub(cells, SLEEPERS, 1);
}
table.free();

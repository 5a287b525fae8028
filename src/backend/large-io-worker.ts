import { workerData } from 'node:worker_threads';
import * as libc from '../sys/libc';
import {
  JobKind,
  LargeIoWorkerData,
  SLOTS,
  STOP,
  SUBMISSIONS,
  SlotState,
  slotCell,
  slotNumber,
} from './large-io-layout';
import { IovecTable, Span, transferSpans } from './vector-io';

/*
 * A large-I/O helper thread: takes submitted jobs (a read or write of a file at an offset, from
 * and into guest buffers given by address), runs them with preadv/pwritev, and signals the queue
 * thread's eventfd. Several helpers serve one queue thread, so a batch of large requests is
 * transferred in parallel rather than one after another.
 */
const { cells: cellsBuffer, numbers: numbersBuffer, doneFd } = workerData as LargeIoWorkerData;
const cells = new Int32Array(cellsBuffer);
const numbers = new Float64Array(numbersBuffer);
const table = new IovecTable();

function spansOf(slot: number): Span[] {
  const spans: Span[] = [];
  for (let index = 0; index < cells[slotCell.spans(slot)]!; index++) {
    const at = slotNumber.span(slot, index);
    spans.push({ address: numbers[at]!, bytes: { byteLength: numbers[at + 1]! } });
  }
  return spans;
}

function run(slot: number): void {
  const read = cells[slotCell.kind(slot)] === JobKind.Read;
  try {
    const moved = transferSpans(
      cells[slotCell.fd(slot)]!,
      table,
      spansOf(slot),
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
  if (!ran) Atomics.wait(cells, SUBMISSIONS, seen);
}
table.free();

/**
 * The shared memory between a queue thread and its large-I/O helpers (large-io-pool.ts,
 * large-io-worker.ts): job slots, each free, submitted, running or done.
 *
 * cells (Int32Array): [0] submissions so far (helpers wait on it), [1] stop, [2] helpers asleep, then per slot its
 * state, operation, file descriptor, span count and errno. numbers (Float64Array): per slot its
 * offset and result (bytes moved), then per slot MAX_SPANS (address, length) pairs.
 */
export const SLOTS = 32;
/** Spans a job may have; a request with more is done on the queue thread. */
export const MAX_SPANS = 256;

export const SUBMISSIONS = 0;
export const STOP = 1;
/** Helpers asleep (or about to be) on SUBMISSIONS: a submission wakes one only when there is one. */
export const SLEEPERS = 2;
const SLOT_BASE = 3;
const SLOT_CELLS = 5;

export const enum SlotState {
  Free = 0,
  Submitted = 1,
  Running = 2,
  Done = 3,
}

export const enum JobKind {
  Read = 0,
  Write = 1,
}

export const slotCell = {
  state: (slot: number): number => SLOT_BASE + slot * SLOT_CELLS,
  kind: (slot: number): number => SLOT_BASE + slot * SLOT_CELLS + 1,
  fd: (slot: number): number => SLOT_BASE + slot * SLOT_CELLS + 2,
  spans: (slot: number): number => SLOT_BASE + slot * SLOT_CELLS + 3,
  errno: (slot: number): number => SLOT_BASE + slot * SLOT_CELLS + 4,
};

export const slotNumber = {
  offset: (slot: number): number => slot * 2,
  result: (slot: number): number => slot * 2 + 1,
  span: (slot: number, index: number): number => SLOTS * 2 + (slot * MAX_SPANS + index) * 2,
};

export const CELLS_BYTES = (SLOT_BASE + SLOTS * SLOT_CELLS) * 4;
export const NUMBERS_BYTES = (SLOTS * 2 + SLOTS * MAX_SPANS * 2) * 8;

/** What a helper thread is started with. */
export interface LargeIoWorkerData {
  cells: SharedArrayBuffer;
  numbers: SharedArrayBuffer;
  /** Signalled (an eventfd) each time a job is done. */
  doneFd: number;
}

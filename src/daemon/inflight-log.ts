import { closeSync, fstatSync, mkdirSync, openSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as libc from '../sys/libc';
import { InflightTracker, QueueBrokenError } from '../virtio/split-queue';

/*
 * The in-flight log of a device: which chains its server has taken from each queue and not yet
 * returned, in a file under /run mapped MAP_SHARED, so the page cache keeps every store the
 * server made even when it is killed. A successor reads it to go on where the dead server stopped.
 *
 * One region per queue at queue * regionBytes(capacity), native (little-endian) byte order:
 *   header, 16 bytes
 *     0  u32  magic 0x46494456 ("VDIF" in the file)
 *     4  u16  version (1)
 *     6  u16  size of the ring the region describes; 0 = idle (nothing taken since the driver
 *             started the queue: no account of the ring is needed)
 *     8  u16  used index as the server last published it
 *    12  u32  capacity: entries in the region (the device's maximum queue size)
 *   entries, 16 bytes per descriptor head
 *     0  u32  1 while the chain at this head is in flight, else 0
 *     8  f64  submission counter (an integer below 2^53: taken chains are numbered in avail order)
 */
const MAGIC = 0x46494456;
const VERSION = 1;
const HEADER_BYTES = 16;
const ENTRY_BYTES = 16;
// Header fields as indices into the region's u32 and u16 views.
const MAGIC_WORD = 0;
const CAPACITY_WORD = 3;
const VERSION_HALF = 2;
const SIZE_HALF = 3;
const USED_HALF = 4;

/** Bytes of one queue's region. */
export function regionBytes(capacity: number): number {
  return HEADER_BYTES + ENTRY_BYTES * capacity;
}

export function inflightLogPath(stateDir: string, name: string): string {
  return join(stateDir, 'inflight', name);
}

/** A new device's log: every queue idle. */
export function createInflightLog(path: string, queues: number, capacity: number): void {
  const file = Buffer.alloc(queues * regionBytes(capacity));
  for (let queue = 0; queue < queues; queue++) {
    const at = queue * regionBytes(capacity);
    file.writeUInt32LE(MAGIC, at);
    file.writeUInt16LE(VERSION, at + 4);
    file.writeUInt32LE(capacity, at + 12);
  }
  writeLogFile(path, file);
}

/**
 * A log that gives no account of any queue (all zero): what a successor writes when the log it
 * needed is gone. Queues in use then fail recovery; a driver reset makes each region valid again.
 */
export function createEmptyInflightLog(path: string, queues: number, capacity: number): void {
  writeLogFile(path, Buffer.alloc(queues * regionBytes(capacity)));
}

/** Whether a log file for this many queues of this capacity is at `path` (contents unchecked). */
export function inflightLogFits(path: string, queues: number, capacity: number): boolean {
  try {
    return statSync(path).size === queues * regionBytes(capacity);
  } catch {
    return false;
  }
}

export function removeInflightLog(path: string): void {
  rmSync(path, { force: true });
}

function writeLogFile(path: string, contents: Buffer): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, contents, { mode: 0o600 });
}

/** The log does not describe the ring consistently: nothing about the queue can be trusted. */
export class InflightLogError extends Error {
  constructor(message: string) {
    super(`in-flight log: ${message}`);
    this.name = 'InflightLogError';
  }
}

/** What recovery reads of a ring: the device's own progress as it published it. */
export interface RingProgress {
  readonly size: number;
  readonly usedIndex: number;
  readonly availIndex: number;
  usedHead(index: number): number;
}

/** Where a queue goes on after a takeover. */
export interface Recovery {
  /** The avail index of the first chain not taken yet. */
  lastAvailIdx: number;
  /** Heads taken and not returned, in the order they were taken: to be served again. */
  inFlight: number[];
}

/**
 * One queue's region of the log; its queue thread is the only writer. Marking and clearing are
 * plain stores into the mapping, no system call. A SIGKILL stops the thread at an instruction
 * boundary and the pages stay in the page cache, so the successor sees exactly the stores made
 * before the kill. The ring and the log are written by the same thread, so program order is all
 * the ordering the protocol needs: typed-array stores are effects V8 never reorders with each
 * other, and used.idx is published with a sequentially consistent store before the log is told.
 */
export class InflightLog implements InflightTracker {
  private readonly words: Uint32Array;
  private readonly halves: Uint16Array;
  private readonly counters: Float64Array;
  private nextCounter = 0;

  private constructor(
    private readonly mapping: libc.Mapping,
    offset: number,
    private readonly capacity: number,
  ) {
    const buffer = mapping.bytes.buffer;
    const start = mapping.bytes.byteOffset + offset;
    this.words = new Uint32Array(buffer, start, regionBytes(capacity) / 4);
    this.halves = new Uint16Array(buffer, start, regionBytes(capacity) / 2);
    this.counters = new Float64Array(buffer, start, regionBytes(capacity) / 8);
  }

  /** Maps queue `queue`'s region of the log at `path`. */
  static open(path: string, queue: number, capacity: number): InflightLog {
    const fd = openSync(path, 'r+');
    try {
      const length = (queue + 1) * regionBytes(capacity);
      const size = fstatSync(fd).size;
      if (size < length) {
        throw new Error(`in-flight log ${path} has ${size} bytes, queue ${queue} needs ${length}`);
      }
      const mapping = libc.mmapFd(fd, length, libc.PROT_READ | libc.PROT_WRITE, 0);
      return new InflightLog(mapping, queue * regionBytes(capacity), capacity);
    } finally {
      closeSync(fd);
    }
  }

  /** A new run of the queue (the driver started it): nothing in flight, used index `usedIdx`. */
  start(size: number, usedIdx: number): void {
    if (size > this.capacity) {
      throw new QueueBrokenError(`ring of ${size} larger than the ${this.capacity} the device offered`);
    }
    // Idle first: a crash half way through leaves an idle region, which is true (nothing taken yet).
    this.halves[SIZE_HALF] = 0;
    this.words.fill(0, HEADER_BYTES / 4);
    this.words[MAGIC_WORD] = MAGIC;
    this.halves[VERSION_HALF] = VERSION;
    this.words[CAPACITY_WORD] = this.capacity;
    this.halves[USED_HALF] = usedIdx;
    this.halves[SIZE_HALF] = size;
    this.nextCounter = 0;
  }

  /** The driver reset the device: whatever was in flight is abandoned. */
  idle(): void {
    this.halves[SIZE_HALF] = 0;
  }

  taken(head: number): void {
    const flag = flagIndex(head);
    if (this.words[flag] !== 0)
      throw new QueueBrokenError(`descriptor ${head} made available while in flight`);
    this.counters[counterIndex(head)] = this.nextCounter++;
    this.words[flag] = 1;
  }

  returned(head: number, usedIdx: number): void {
    // The flag before the index: a crash in between leaves the head in the stretch of used ring
    // that recovery reads again, where clearing it twice is harmless. In the other order a crash
    // would leave a returned head flagged and outside that stretch, and it would be served twice.
    this.words[flagIndex(head)] = 0;
    this.halves[USED_HALF] = usedIdx;
  }

  /**
   * After a takeover: settles what the dead server left against the ring and says where to go on.
   * Throws InflightLogError (changing nothing) when the log does not fit the ring.
   */
  recover(ring: RingProgress): Recovery {
    this.checkHeader();
    const size = this.halves[SIZE_HALF]!;
    const ringUsed = ring.usedIndex;
    if (size === 0) {
      this.start(ring.size, ringUsed);
      return { lastAvailIdx: ringUsed, inFlight: [] };
    }
    if (size !== ring.size) throw new InflightLogError(`log of a ring of ${size}, the ring has ${ring.size}`);
    const logUsed = this.halves[USED_HALF]!;
    const unlogged = (ringUsed - logUsed) & 0xffff;
    if (unlogged > size) {
      throw new InflightLogError(`used index ${ringUsed} is ${unlogged} past the log's ${logUsed}`);
    }
    // Returned on the ring, then the server died before the log heard of it.
    const returned = new Set<number>();
    for (let i = 0; i < unlogged; i++) {
      const head = ring.usedHead((logUsed + i) & 0xffff);
      if (head >= size) throw new InflightLogError(`used ring names head ${head} of ${size}`);
      returned.add(head);
    }
    const inFlight: number[] = [];
    for (let head = 0; head < this.capacity; head++) {
      const flag = this.words[flagIndex(head)]!;
      if (flag > 1) throw new InflightLogError(`in-flight flag of head ${head} is ${flag}`);
      if (flag === 0 || returned.has(head)) continue;
      if (head >= size) throw new InflightLogError(`head ${head} in flight in a ring of ${size}`);
      inFlight.push(head);
    }
    const available = (ring.availIndex - ringUsed) & 0xffff;
    if (available < inFlight.length) {
      throw new InflightLogError(
        `${inFlight.length} chains in flight but only ${available} available past used index ${ringUsed}`,
      );
    }
    for (const head of returned) this.words[flagIndex(head)] = 0;
    this.halves[USED_HALF] = ringUsed;
    const counter = (head: number): number => this.counters[counterIndex(head)]!;
    inFlight.sort((a, b) => counter(a) - counter(b));
    for (let head = 0; head < this.capacity; head++)
      this.nextCounter = Math.max(this.nextCounter, counter(head) + 1);
    return { lastAvailIdx: (ringUsed + inFlight.length) & 0xffff, inFlight };
  }

  close(): void {
    this.mapping.unmap();
  }

  private checkHeader(): void {
    const magic = this.words[MAGIC_WORD]!;
    if (magic !== MAGIC) throw new InflightLogError(`no header (magic 0x${magic.toString(16)})`);
    const version = this.halves[VERSION_HALF]!;
    if (version !== VERSION) throw new InflightLogError(`version ${version}, not ${VERSION}`);
    const capacity = this.words[CAPACITY_WORD]!;
    if (capacity !== this.capacity) {
      throw new InflightLogError(`log region of ${capacity} entries, the device has ${this.capacity}`);
    }
  }
}

function flagIndex(head: number): number {
  return (HEADER_BYTES + ENTRY_BYTES * head) / 4;
}

function counterIndex(head: number): number {
  return (HEADER_BYTES + ENTRY_BYTES * head + 8) / 8;
}

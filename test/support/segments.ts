import * as libc from '../../src/sys/libc';
import { Segment, segmentOf } from '../../src/virtio/memory';

/** Segments of the given lengths laid end to end in `mapping`, starting at `offset`. */
export function carve(mapping: libc.Mapping, lengths: readonly number[], offset = 0): Segment[] {
  const segments: Segment[] = [];
  let at = offset;
  for (const length of lengths) {
    segments.push(segmentOf(mapping.bytes, mapping.address, at, length));
    at += length;
  }
  if (at > mapping.length) throw new Error('test bug: segments overflow the mapping');
  return segments;
}

export function joined(segments: readonly Segment[]): Buffer {
  return Buffer.concat(segments.map((s) => Buffer.from(s.bytes)));
}

/** Deterministic segment lengths between 1 and `max`. */
export function lengths(count: number, max: number, seed = 7): number[] {
  const result: number[] = [];
  let x = seed;
  for (let i = 0; i < count; i++) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    result.push(1 + (x % max));
  }
  return result;
}

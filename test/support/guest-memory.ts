import * as libc from '../../src/sys/libc';
import { Access, GuestMemory, Segment, segmentOf } from '../../src/virtio/memory';

/** What the device may do with a region, as an IOTLB entry's perm says (VDUSE_ACCESS_*). */
export type RegionAccess = 'ro' | 'wo' | 'rw';

export interface RegionSpec {
  /** First guest I/O virtual address of the region. */
  iova: number;
  size: number;
  access: RegionAccess;
}

export interface Region extends RegionSpec {
  /** Real process memory (an anonymous mapping), so system calls can use `address` directly. */
  readonly mapping: libc.Mapping;
}

/**
 * Guest memory for tests: a few regions of real process memory at chosen IOVAs, translated the way
 * the VDUSE IOTLB is. A span must lie entirely inside one region and the region must allow the
 * access asked for; anything else (gaps, straddling, unsafe numbers, empty spans) is null.
 */
export class TestMemory implements GuestMemory {
  readonly regions: readonly Region[];
  private readonly cursors: number[];

  constructor(specs: readonly RegionSpec[]) {
    const sorted = [...specs].sort((a, b) => a.iova - b.iova);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i - 1]!.iova + sorted[i - 1]!.size > sorted[i]!.iova) throw new Error('regions overlap');
    }
    this.regions = specs.map((spec) => ({ ...spec, mapping: libc.mapAnonymous(spec.size) }));
    this.cursors = specs.map(() => 0);
  }

  translate(iova: number, length: number, access: Access): Segment | null {
    if (!Number.isSafeInteger(iova) || !Number.isSafeInteger(length) || iova < 0 || length <= 0) return null;
    const region = this.regionOf(iova, length);
    if (!region) return null;
    if (access === Access.Read && region.access === 'wo') return null;
    if (access === Access.Write && region.access === 'ro') return null;
    const offset = iova - region.iova;
    return segmentOf(region.mapping.bytes, region.mapping.address, offset, length);
  }

  /** The region holding all of [iova, iova + length), ignoring access. */
  regionOf(iova: number, length: number): Region | undefined {
    return this.regions.find((r) => iova >= r.iova && iova + length <= r.iova + r.size);
  }

  /** The bytes at [iova, +length) whatever the region's access: how the test (the driver) sees them. */
  bytes(iova: number, length: number): Uint8Array {
    const region = this.regionOf(iova, length);
    if (!region) throw new Error(`test bug: [${iova}, +${length}) is not in a region`);
    const offset = iova - region.iova;
    return region.mapping.bytes.subarray(offset, offset + length);
  }

  view(iova: number, length: number): DataView {
    const bytes = this.bytes(iova, length);
    return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  write(iova: number, data: Uint8Array): void {
    this.bytes(iova, data.byteLength).set(data);
  }

  /** Reserves `length` bytes (zeroed) in region `index`, aligned to `align`; returns their IOVA. */
  alloc(index: number, length: number, align = 16): number {
    const region = this.regions[index]!;
    const start = Math.ceil(this.cursors[index]! / align) * align;
    if (start + length > region.size) throw new Error(`test bug: region ${index} is full`);
    this.cursors[index] = start + length;
    region.mapping.bytes.fill(0, start, start + length);
    return region.iova + start;
  }

  /** Forgets all allocations (the memory keeps its contents until allocated again). */
  resetAllocations(): void {
    this.cursors.fill(0);
  }

  /** The region and offset whose process memory holds `segment`, or undefined if it is foreign memory. */
  locate(segment: Segment): { region: Region; offset: number } | undefined {
    for (const region of this.regions) {
      const offset = segment.address - region.mapping.address;
      if (offset < 0 || offset + segment.bytes.byteLength > region.size) continue;
      const bytes = region.mapping.bytes;
      if (segment.bytes.buffer !== bytes.buffer) return undefined;
      if (segment.bytes.byteOffset !== bytes.byteOffset + offset) return undefined;
      return { region, offset };
    }
    return undefined;
  }

  free(): void {
    for (const region of this.regions) region.mapping.unmap();
  }
}

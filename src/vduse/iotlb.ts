import * as libc from '../sys/libc';
import { Access, GuestMemory, Segment, segmentOf } from '../virtio/memory';
import { VduseDevice } from './device';
import { ACCESS_RO, ACCESS_WO } from './uapi';

interface MappedRegion {
  start: number;
  last: number;
  perm: number;
  mapping: libc.Mapping;
}

/**
 * Guest memory as the VDUSE IOTLB describes it: regions are fetched with IOTLB_GET_FD and mmap'd
 * on first use, and dropped when the kernel invalidates their range (UPDATE_IOTLB).
 */
export class IotlbMemory implements GuestMemory {
  private regions: MappedRegion[] = [];
  private retired: MappedRegion[] = [];
  private recent: MappedRegion | undefined;

  constructor(private readonly device: VduseDevice) {}

  translate(iova: number, length: number, access: Access): Segment | null {
    if (!Number.isSafeInteger(iova) || iova < 0 || length <= 0) return null;
    const last = iova + length - 1;
    const region = this.find(iova, last) ?? this.fetch(iova, last);
    if (!region || last > region.last) return null;
    if (access === Access.Write && region.perm === ACCESS_RO) return null;
    if (access === Access.Read && region.perm === ACCESS_WO) return null;
    const offset = iova - region.start;
    return segmentOf(region.mapping.bytes, region.mapping.address, offset, length);
  }

  /**
   * Stops using every mapping overlapping [start, last]; the next access maps afresh. The old
   * mappings stay until release(): I/O still in flight may be writing into them.
   */
  invalidate(start: number, last: number): void {
    const kept: MappedRegion[] = [];
    for (const region of this.regions) {
      if (region.last < start || region.start > last) kept.push(region);
      else this.retired.push(region);
    }
    this.regions = kept;
    this.recent = undefined;
  }

  clear(): void {
    this.invalidate(0, Number.MAX_SAFE_INTEGER);
  }

  /** Unmaps what invalidate() retired; call when no I/O uses those buffers any more. */
  release(): void {
    for (const region of this.retired.splice(0)) region.mapping.unmap();
  }

  private find(iova: number, last: number): MappedRegion | undefined {
    const recent = this.recent;
    if (recent && iova >= recent.start && last <= recent.last) return recent;
    for (const region of this.regions) {
      if (iova >= region.start && iova <= region.last) {
        this.recent = region;
        return region;
      }
    }
    return undefined;
  }

  private fetch(iova: number, last: number): MappedRegion | undefined {
    const found = this.device.iotlbFd(iova, last);
    if (!found) return undefined;
    const { fd, entry } = found;
    try {
      const start = Number(entry.start);
      const regionLast = Number(entry.last);
      if (start > iova || regionLast < iova) return undefined;
      const prot =
        (entry.perm & ACCESS_RO ? libc.PROT_READ : 0) | (entry.perm & ACCESS_WO ? libc.PROT_WRITE : 0);
      const mapping = libc.mmapFd(fd, regionLast - start + 1, prot, Number(entry.offset));
      const region = { start, last: regionLast, perm: entry.perm, mapping };
      this.regions.push(region);
      this.recent = region;
      return region;
    } finally {
      libc.closeFd(fd);
    }
  }
}

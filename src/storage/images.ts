import {
  closeSync,
  existsSync,
  fstatSync,
  ftruncateSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { statfs } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fsyncPath } from '../sys/atomic-file';
import { allocateRange, seekData } from '../sys/file-ranges';

export type ImageKind = 'volumes' | 'snapshots';
const IMAGE_KINDS: readonly ImageKind[] = ['volumes', 'snapshots'];

/**
 * The image files of one node's volumes and snapshots: `<dataDir>/volumes/<id>.img` and
 * `<dataDir>/snapshots/<id>.img`, sparse (or reserved: see createEmpty), created and grown
 * atomically. Ids are validated by the caller (see csi/ids.ts) before they reach this class.
 */
export class ImageDirectory {
  constructor(readonly dataDir: string) {}

  path(kind: ImageKind, id: string): string {
    if (!/^[a-z]+-[0-9a-f]{32}$/.test(id)) throw new Error(`not an image id: ${JSON.stringify(id)}`);
    return join(this.dataDir, kind, `${id}.img`);
  }

  /** The directory of each kind of image: where a device server may write copies of its image. */
  directories(): string[] {
    return IMAGE_KINDS.map((kind) => join(this.dataDir, kind));
  }

  exists(kind: ImageKind, id: string): boolean {
    return existsSync(this.path(kind, id));
  }

  /** Size in bytes, or null when the image does not exist. */
  size(kind: ImageKind, id: string): number | null {
    try {
      return statSync(this.path(kind, id)).size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
  }

  /**
   * A new image, all holes; or with `reserve` all of its blocks allocated before it appears, so
   * writes to it never fail for want of space. An image left by an interrupted create is replaced.
   */
  async createEmpty(kind: ImageKind, id: string, bytes: number, reserve = false): Promise<void> {
    const target = this.path(kind, id);
    this.ensureDirectory(kind);
    const temporary = `${target}.tmp-${randomBytes(6).toString('hex')}`;
    const fd = openSync(temporary, 'wx', 0o600);
    try {
      ftruncateSync(fd, bytes);
      if (reserve) await allocateRange(fd, 0, bytes, `fallocate ${temporary}`);
      fsyncSync(fd);
    } catch (error) {
      closeSync(fd);
      rmSync(temporary, { force: true });
      throw error;
    }
    closeSync(fd);
    renameDurably(temporary, target);
  }

  /** Allocates every block of an image that is still a hole (thick provisioning). */
  async reserve(kind: ImageKind, id: string): Promise<void> {
    const path = this.path(kind, id);
    const fd = openSync(path, 'r+');
    try {
      await allocateRange(fd, 0, fstatSync(fd).size, `fallocate ${path}`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  /** Grows an image (never shrinks it); the new tail reads as zeros and takes no space. */
  grow(kind: ImageKind, id: string, bytes: number): void {
    const fd = openSync(this.path(kind, id), 'r+');
    try {
      const size = statSync(this.path(kind, id)).size;
      if (bytes > size) {
        ftruncateSync(fd, bytes);
        fsyncSync(fd);
      }
    } finally {
      closeSync(fd);
    }
  }

  remove(kind: ImageKind, id: string): void {
    rmSync(this.path(kind, id), { force: true });
    if (existsSync(join(this.dataDir, kind))) fsyncPath(join(this.dataDir, kind));
  }

  /** Ids that have an image file (for finding images whose volume record was never written). */
  list(kind: ImageKind): string[] {
    if (!existsSync(join(this.dataDir, kind))) return [];
    return readdirSync(join(this.dataDir, kind))
      .filter((name) => /^[a-z]+-[0-9a-f]{32}\.img$/.test(name))
      .map((name) => name.slice(0, -'.img'.length));
  }

  /** Removes temporary files an interrupted create or copy left behind. */
  removeLeftovers(kind: ImageKind): void {
    if (!existsSync(join(this.dataDir, kind))) return;
    for (const name of readdirSync(join(this.dataDir, kind))) {
      if (name.includes('.img.tmp-')) rmSync(join(this.dataDir, kind, name), { force: true });
    }
  }

  /** Bytes free for images on the data directory's filesystem. */
  async freeBytes(): Promise<number> {
    mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
    const stats = await statfs(this.dataDir);
    return stats.bavail * stats.bsize;
  }

  /**
   * The room volume images have on the data directory's filesystem: what they take already plus
   * what is free. Whatever else is there (snapshots, other files) is not theirs. What the images
   * take is read first: a block written meanwhile is then missed once rather than counted twice
   * (as taken and as free), so the room is never overstated.
   */
  async roomBytes(): Promise<number> {
    const taken = this.list('volumes').reduce((sum, id) => sum + this.allocatedBytes('volumes', id), 0);
    return taken + (await this.freeBytes());
  }

  /** Bytes of the filesystem an image takes (its allocated blocks); 0 when it does not exist. */
  allocatedBytes(kind: ImageKind, id: string): number {
    try {
      return statSync(this.path(kind, id)).blocks * 512;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw error;
    }
  }

  /**
   * True when the image has no data extent at all, so every byte of it reads as zero: a volume
   * nothing ever wrote. Unwritten (reserved) extents count as holes; a filesystem that cannot tell
   * reports everything as data, which only makes this false.
   */
  holdsNoData(kind: ImageKind, id: string): boolean {
    const fd = openSync(this.path(kind, id), 'r');
    try {
      return seekData(fd, 0, `lseek SEEK_DATA ${this.path(kind, id)}`) === null;
    } finally {
      closeSync(fd);
    }
  }

  ensureDirectory(kind: ImageKind): void {
    mkdirSync(join(this.dataDir, kind), { recursive: true, mode: 0o700 });
  }
}

function renameDurably(from: string, to: string): void {
  renameSync(from, to);
  fsyncPath(dirname(to));
}

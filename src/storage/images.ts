import {
  closeSync,
  existsSync,
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

export type ImageKind = 'volumes' | 'snapshots';

/**
 * The image files of one node's volumes and snapshots: `<dataDir>/volumes/<id>.img` and
 * `<dataDir>/snapshots/<id>.img`, sparse, created and grown atomically. Ids are validated by the
 * caller (see csi/ids.ts) before they reach this class.
 */
export class ImageDirectory {
  constructor(readonly dataDir: string) {}

  path(kind: ImageKind, id: string): string {
    if (!/^[a-z]+-[0-9a-f]{32}$/.test(id)) throw new Error(`not an image id: ${JSON.stringify(id)}`);
    return join(this.dataDir, kind, `${id}.img`);
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

  /** A new all-hole image; an image left by an interrupted create is replaced. */
  createEmpty(kind: ImageKind, id: string, bytes: number): void {
    const target = this.path(kind, id);
    this.ensureDirectory(kind);
    const temporary = `${target}.tmp-${randomBytes(6).toString('hex')}`;
    const fd = openSync(temporary, 'wx', 0o600);
    try {
      ftruncateSync(fd, bytes);
      fsyncSync(fd);
    } catch (error) {
      closeSync(fd);
      rmSync(temporary, { force: true });
      throw error;
    }
    closeSync(fd);
    renameDurably(temporary, target);
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

  ensureDirectory(kind: ImageKind): void {
    mkdirSync(join(this.dataDir, kind), { recursive: true, mode: 0o700 });
  }
}

function renameDurably(from: string, to: string): void {
  renameSync(from, to);
  fsyncPath(dirname(to));
}

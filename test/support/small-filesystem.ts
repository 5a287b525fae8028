import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { unmount } from '../../src/node/mount';
import { runTool } from '../../src/node/run';

/**
 * A tmpfs of a given size, for a data directory that runs out of space, when this process may mount
 * (root); a plain directory otherwise (check `mounted`).
 */
export class SmallFilesystem {
  dir = '';
  mounted = false;

  constructor(
    readonly bytes: number,
    private readonly prefix = 'vduse-csi-small-',
  ) {}

  /** Mounts it on `dir` (made when missing), or on a new temporary directory. */
  async create(dir?: string): Promise<void> {
    if (dir) mkdirSync(dir, { recursive: true });
    this.dir = dir ?? mkdtempSync(join(tmpdir(), this.prefix));
    if (process.getuid?.() !== 0) return;
    await runTool('mount', ['-t', 'tmpfs', '-o', `size=${this.bytes}`, 'tmpfs', this.dir]);
    this.mounted = true;
  }

  async remove(): Promise<void> {
    if (this.mounted) await unmount(this.dir);
    this.mounted = false;
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

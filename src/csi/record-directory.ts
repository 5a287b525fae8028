import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fsyncPath, writeFileAtomic } from '../sys/atomic-file';

/**
 * A directory of JSON records, one atomic, durable file per key. Keys are validated before they
 * become file names. Read afresh on every call, so processes sharing the directory see one truth.
 */
export class RecordDirectory<T> {
  constructor(
    private readonly directory: string,
    private readonly isKey: (key: string) => boolean,
    private readonly keyOf: (record: T) => string,
  ) {}

  get(key: string): T | null {
    if (!this.isKey(key)) return null;
    let text: string;
    try {
      text = readFileSync(this.path(key), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
    const record = JSON.parse(text) as T;
    if (this.keyOf(record) !== key)
      throw new Error(`record file ${this.path(key)} holds ${this.keyOf(record)}`);
    return record;
  }

  /** Sorted by key. */
  list(): T[] {
    let names: string[];
    try {
      names = readdirSync(this.directory);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    return names
      .filter((name) => name.endsWith('.json'))
      .map((name) => name.slice(0, -'.json'.length))
      .sort()
      .map((key) => this.get(key))
      .filter((record): record is T => record !== null);
  }

  put(record: T): void {
    writeFileAtomic(this.path(this.keyOf(record)), `${JSON.stringify(record)}\n`);
  }

  delete(key: string): void {
    rmSync(this.path(key), { force: true });
    if (existsSync(this.directory)) fsyncPath(this.directory);
  }

  private path(key: string): string {
    if (!this.isKey(key)) throw new Error(`not a valid key: ${JSON.stringify(key)}`);
    return join(this.directory, `${key}.json`);
  }
}

import { log } from '../log';

/**
 * Runs `work` for keys one at a time per key; a key pushed while its work runs runs once more
 * afterwards, however often it was pushed. Work reads the current state itself, so it never acts
 * on a stale copy of it.
 */
export class LatestPerKey {
  private readonly pending = new Set<string>();
  private readonly running = new Map<string, Promise<void>>();

  constructor(private readonly work: (key: string) => Promise<void>) {}

  push(key: string): void {
    this.pending.add(key);
    if (!this.running.has(key)) this.running.set(key, this.drain(key));
  }

  /** Resolves once no work runs. */
  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.all(this.running.values());
  }

  private async drain(key: string): Promise<void> {
    while (this.pending.delete(key)) {
      try {
        await this.work(key);
      } catch (error) {
        log.error('node agent work failed', { key, error: String(error) });
      }
    }
    this.running.delete(key);
  }
}

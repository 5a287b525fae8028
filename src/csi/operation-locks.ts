import { aborted } from './errors';

/**
 * One operation at a time per volume, snapshot or name: a second call that arrives while the
 * first is still running is answered ABORTED, as the CSI spec asks, and the CO retries later.
 */
export class OperationLocks {
  private readonly busy = new Set<string>();

  async run<T>(keys: string[], operation: () => Promise<T>): Promise<T> {
    const taken = [...new Set(keys)];
    const clash = taken.find((key) => this.busy.has(key));
    if (clash !== undefined) throw aborted(`an operation on ${clash} is already in progress`);
    for (const key of taken) this.busy.add(key);
    try {
      return await operation();
    } finally {
      for (const key of taken) this.busy.delete(key);
    }
  }
}

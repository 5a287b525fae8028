/**
 * One read shared by every caller until it settles: prom-client runs the collect callbacks of a
 * scrape concurrently, and they should all see the same read, made once.
 */
export class SharedRead<T> {
  private pending: Promise<T> | undefined;

  constructor(private readonly read: () => Promise<T>) {}

  get(): Promise<T> {
    this.pending ??= this.read().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }
}

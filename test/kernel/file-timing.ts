import { basename } from 'node:path';

/*
 * Mocha root hooks (--require) for the kernel suite: one line per test file with its wall time,
 * counted from the end of the previous file's last test (so its own before-all hooks, such as a Ceph
 * cluster's start, are its own) to the end of its last test, so a long CI run shows where its time went.
 */
let current: { file: string; startedAt: number } | undefined;
let lastTestEndedAt = performance.now();

function report(endedAt: number): void {
  if (current)
    console.log(
      `[file time] ${basename(current.file)}: ${((endedAt - current.startedAt) / 1000).toFixed(0)} s`,
    );
}

export const mochaHooks = {
  beforeEach(this: Mocha.Context): void {
    const file = this.currentTest?.file;
    if (file === undefined || file === current?.file) return;
    report(lastTestEndedAt);
    current = { file, startedAt: lastTestEndedAt };
  },
  afterEach(): void {
    lastTestEndedAt = performance.now();
  },
  afterAll(): void {
    report(lastTestEndedAt);
  },
};

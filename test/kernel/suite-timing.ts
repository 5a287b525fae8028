/*
 * Mocha root hooks (--require) for the kernel suite: one line per top-level suite (one per test
 * file) with its wall time, counted from the end of the previous suite's last test (so its own
 * before-all hooks, such as a Ceph cluster's start, are its own) to the end of its last test, so a
 * long CI run shows where its time went.
 */
let current: { suite: string; startedAt: number } | undefined;
let lastTestEndedAt = performance.now();

function topSuiteTitle(test: Mocha.Runnable): string {
  let suite = test.parent;
  while (suite?.parent && !suite.parent.root) suite = suite.parent;
  return suite?.title ?? '';
}

function report(endedAt: number): void {
  if (current)
    console.log(`[suite time] ${current.suite}: ${((endedAt - current.startedAt) / 1000).toFixed(0)} s`);
}

export const mochaHooks = {
  beforeEach(this: Mocha.Context): void {
    if (!this.currentTest) return;
    const suite = topSuiteTitle(this.currentTest);
    if (suite === current?.suite) return;
    report(lastTestEndedAt);
    current = { suite, startedAt: lastTestEndedAt };
  },
  afterEach(): void {
    lastTestEndedAt = performance.now();
  },
  afterAll(): void {
    report(lastTestEndedAt);
  },
};

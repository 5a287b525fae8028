import assert from 'node:assert/strict';
import { RunnerFacts, requireRoot, skipBecause, thisRunner } from '../support/skips';

/** Stands in for mocha's `this.skip()`, which throws to end the case. */
class Skipped extends Error {}

/** A mocha context of a case with this title, whose skip() throws Skipped. */
function caseContext(title: string): Mocha.Context {
  return {
    test: { fullTitle: () => title },
    skip: () => {
      throw new Skipped();
    },
  } as unknown as Mocha.Context;
}

function runner(uid: number | undefined, ci: boolean): RunnerFacts & { lines: string[] } {
  const lines: string[] = [];
  return { uid, ci, log: (line) => lines.push(line), lines };
}

describe('skipping cases out loud', () => {
  describe('requireRoot', () => {
    it('lets a root-only case run as root, in CI or not, saying nothing', () => {
      for (const ci of [true, false]) {
        const root = runner(0, ci);
        requireRoot(caseContext('mounts a tmpfs'), 'mounting needs root', root);
        assert.deepEqual(root.lines, []);
      }
    });

    it('fails a root-only case that cannot run under CI, naming it and why', () => {
      for (const uid of [1000, undefined]) {
        const user = runner(uid, true);
        assert.throws(
          () => requireRoot(caseContext('mounts a tmpfs'), 'mounting needs root', user),
          (error: unknown) =>
            !(error instanceof Skipped) &&
            error instanceof Error &&
            error.message ===
              'mounts a tmpfs: needs root (mounting needs root), and under CI=true it must run',
        );
        assert.deepEqual(user.lines, []);
      }
    });

    it('skips a root-only case elsewhere with a console line naming it and why', () => {
      const user = runner(1000, false);
      assert.throws(() => requireRoot(caseContext('mounts a tmpfs'), 'mounting needs root', user), Skipped);
      assert.deepEqual(user.lines, ['      (skipped: mounts a tmpfs: not root: mounting needs root)']);
    });
  });

  it('skipBecause says what it skips and why, then skips', () => {
    const lines: string[] = [];
    assert.throws(
      () => skipBecause(caseContext('uses /dev/shm'), 'no tmpfs at /dev/shm', (line) => lines.push(line)),
      Skipped,
    );
    assert.deepEqual(lines, ['      (skipped: uses /dev/shm: no tmpfs at /dev/shm)']);
  });

  it('reads the runner from the process: its uid and CI', () => {
    const before = process.env.CI;
    try {
      for (const [value, ci] of [
        ['true', true],
        ['1', true],
        ['false', false],
        ['', false],
      ] as const) {
        process.env.CI = value;
        assert.equal(thisRunner().ci, ci, `CI=${value}`);
        assert.equal(thisRunner().uid, process.getuid?.());
      }
    } finally {
      if (before === undefined) delete process.env.CI;
      else process.env.CI = before;
    }
  });
});
